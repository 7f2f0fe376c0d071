"""The writer's side of the columnar cache: segments written as the log grows.

Readers keep what they decode in ``RUN/.columns`` (:mod:`cockpit.logs._columns`), but
the first reader of a long run had to decode all of its JSON (minutes for 100,000
steps). The writer thread already holds every line it writes; when it has nothing to write
(the queue is empty) it decodes them and sorts them into rows, and writes a segment
each :data:`SEGMENT_BYTES` of ``steps.jsonl`` and one for the rest on close (if a
segment was written before it, or the rest is at least ``MIN_SEGMENT_BYTES``). The cache never delays a line: a SIGKILL loses no more
steps than without it, unless the writer is behind by :data:`SEGMENT_BYTES` twice
over, when it catches up before going on (memory stays bounded).
the first open of a finished run then maps the segments and decodes no JSON, and a
live run decodes only what its last segment does not cover.

The segments are the readers' kind, named and checked alike (the CRC-32 of the end of
their byte range), so ``steps.jsonl`` stays the source of truth: a segment is
written only after the lines it covers, and a segment that does not match the log is
ignored. Memory is bounded: the lines and rows of at most three times
:data:`SEGMENT_BYTES` of log. Nothing here
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
from cockpit.logs._format import decode_line
from cockpit.logs._note_table import NoteTable
from cockpit.logs.flatten import HistogramRow, ScalarRow, flatten_rows
from cockpit.logs.schema import ERROR

__all__ = ["SEGMENT_BYTES", "SegmentWriter"]

#: Bytes of ``steps.jsonl`` each segment of the writer covers (at least).
SEGMENT_BYTES = 8 * 2**20
#: Lines :meth:`SegmentWriter.work` sorts at a time, between looks at the queue.
_BATCH = 32


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
        self._lines: list[tuple[str, int]] = []
        self._unsorted = 0
        self._notes = NoteTable()

    @property
    def pending(self) -> bool:
        """Whether lines wait to be sorted (:meth:`work`)."""
        return bool(self._lines)

    def add(self, line: str, length: int) -> None:
        """Take a line just appended to ``steps.jsonl``; it is sorted later.

        Args:
            line: The line, without its newline.
            length: The line's bytes, newline included.

        """
        if not self.active:
            return
        self._lines.append((line, length))
        self._unsorted += length
        while self._unsorted >= 2 * self._segment_bytes and self.active:
            self.work()

    def work(self) -> None:
        """Sort a few pending lines into rows; write the segment that is due."""
        batch = self._lines[:_BATCH]
        for line, length in batch:
            if not self.active:  # stopped: the lines are dropped already
                return
            self._unsorted -= length
            self._sort(line, length)
        del self._lines[: len(batch)]  # only now: pending until the batch is done

    def _sort(self, line: str, length: int) -> None:
        try:
            record = decode_line(line)
        except (ValueError, RecursionError):  # cannot be cached as a reader reads it
            self.stop()
            return
        self._notes.expand(record)
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
        self._lines, self._unsorted = [], 0

    def close(self) -> None:
        """Sort what is pending; write the rest as a segment if worth one.

        After a segment, the rest always is: a reader would otherwise join the
        cached rows and the decoded ones, copying the whole frame (a 100,000-step
        run: 270 MB more); alone, only from :data:`MIN_SEGMENT_BYTES` on.
        """
        while self._lines:
            self.work()
        pending = self._span.end - self._span.start
        worth = self._span.start > 0 or pending >= _columns.MIN_SEGMENT_BYTES
        if self.active and pending and worth:
            self._save()
        self.stop()

    def _save(self) -> None:
        rows = (self._scalars, self._histograms)
        try:
            saved = save_segment(
                self._run_dir,
                None,
                self._span,
                rows,
                self._errors,
                [],
                dict(self._notes.known),
            )
        except Exception:  # the cache is optional: it never disturbs the log
            saved = None
        if saved is None:
            self.stop()
            return
        end, lines = self._span.end, self._span.lines
        self._span = Span(end, end, lines, lines)
        self._scalars, self._histograms, self._errors = [], [], []
