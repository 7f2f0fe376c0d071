"""The writer's side of the columnar cache: segments written as the log grows.

Readers keep what they decode in ``RUN/.columns`` (:mod:`cockpit.logs._columns`), but
the first reader of a long run had to decode all of its JSON (minutes for 100,000
steps). The writer thread already holds every record it writes, so it sorts them
into rows as it goes and writes a segment each :data:`SEGMENT_BYTES` of
``steps.jsonl`` and one for the rest on close (if at least ``MIN_SEGMENT_BYTES``):
the first open of a finished run then maps the segments and decodes no JSON, and a
live run decodes only what its last segment does not cover.

The segments are the readers' kind, named and checked alike (the CRC-32 of the end of
their byte range), so ``steps.jsonl`` stays the source of truth: a segment is
written only after the lines it covers, and a segment that does not match the log is
ignored. Memory is bounded: the pending rows of at most :data:`SEGMENT_BYTES` of
log (about 20 MB of Python objects for 8 MiB of ``economy`` lines). Nothing here
raises: a segment that cannot be written stops the cache for the run (a later one
could not chain to it), and readers decode the JSON from there. Without ``pyarrow``
nothing is kept, and nothing here runs on the training thread.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from cockpit.logs import _columns
from cockpit.logs._columns import Span, save_segment
from cockpit.logs.flatten import HistogramRow, ScalarRow, flatten_rows
from cockpit.logs.schema import ERROR

__all__ = ["SEGMENT_BYTES", "SegmentWriter"]

#: Bytes of ``steps.jsonl`` each segment of the writer covers (at least).
SEGMENT_BYTES = 8 * 2**20


class SegmentWriter:
    """Sorts the records written into rows and writes them as segments.

    Args:
        run_dir: The run directory.
        segment_bytes: Bytes of log per segment; default :data:`SEGMENT_BYTES`.
        active: ``False``: keep nothing.

    Attributes:
        active: Whether segments are still written (``pyarrow`` is installed and
            no segment failed).

    """

    def __init__(
        self, run_dir: Path, segment_bytes: int | None = None, active: bool = True
    ) -> None:
        self._run_dir = run_dir
        self._segment_bytes = segment_bytes or SEGMENT_BYTES
        # Looked up, not imported: the import happens on the writer thread.
        self.active = active and importlib.util.find_spec("pyarrow") is not None
        self._span = Span(0, 0, 0, 0)
        self._scalars: list[ScalarRow] = []
        self._histograms: list[HistogramRow] = []
        self._errors: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any], length: int) -> None:
        """Take the record of a line just appended to ``steps.jsonl``.

        Args:
            record: The line decoded (``decode_line``).
            length: The line's bytes, newline included.

        """
        if not self.active:
            return
        scalars, histograms = flatten_rows([record])
        self._scalars += scalars
        self._histograms += histograms
        if ERROR in record:
            self._errors.append(record)
        span = self._span
        self._span = Span(
            span.start, span.end + length, span.start_lines, span.lines + 1
        )
        if self._span.end - self._span.start >= self._segment_bytes:
            self._save()

    def stop(self) -> None:
        """Write no more segments (the log met an I/O fault)."""
        self.active = False
        self._scalars, self._histograms, self._errors = [], [], []

    def close(self) -> None:
        """Write the rest as a segment if it is long enough to be worth one."""
        pending = self._span.end - self._span.start
        if self.active and pending and pending >= _columns.MIN_SEGMENT_BYTES:
            self._save()
        self.stop()

    def _save(self) -> None:
        rows = (self._scalars, self._histograms)
        try:
            saved = save_segment(
                self._run_dir, None, self._span, rows, self._errors, []
            )
        except Exception:  # the cache is optional: it never disturbs the log
            saved = None
        if saved is None:
            self.stop()
            return
        end, lines = self._span.end, self._span.lines
        self._span = Span(end, end, lines, lines)
        self._scalars, self._histograms, self._errors = [], [], []
