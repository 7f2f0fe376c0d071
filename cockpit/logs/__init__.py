"""The log format: a background writer and pandas readers; no torch.

A run is a directory with ``meta.json`` and an append-only ``steps.jsonl``; it is the
only contract between the training process and everything that reads it.
"""

from cockpit.logs._format import FORMAT_VERSION
from cockpit.logs.reader import LogReader, Run, load
from cockpit.logs.writer import RunWriter

__all__ = ["FORMAT_VERSION", "LogReader", "Run", "RunWriter", "load"]
