"""The parts of ``benchmarks/overhead.py``: problems, configurations, timing, memory, report.

``overhead.py`` is the entry point and documents the method; run it, not this package.
"""
