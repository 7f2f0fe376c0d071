"""The parts of ``benchmarks/dashboard.py``: records, latency, the server's costs, report.

``dashboard.py`` is the entry point and documents the method; run it, not this package.
"""
