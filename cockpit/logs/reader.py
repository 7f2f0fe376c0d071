"""Read run directories: incrementally for live views, or whole into pandas.

:class:`LogReader` is the one reader of ``steps.jsonl``: it reads from a byte offset
on, so a live view parses only what was appended; it leaves a last line without its
newline (still being written, or the writer died mid-line) for a later call, skips a
corrupt line (not JSON, invalid UTF-8, nested too deep, a number out of range, longer
than :data:`MAX_LINE_BYTES`) with a :class:`CorruptLogWarning` naming its line number,
and goes on, and refuses a run in a newer major format version. Its offset moves only
past lines whose records it has handed out, so an error never loses valid steps.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pandas as pd

from cockpit.exceptions import CorruptLogWarning, LogFormatError
from cockpit.logs import _columns
from cockpit.logs._format import check_version, decode_line
from cockpit.logs._meta_fields import checked_meta
from cockpit.logs._note_table import NoteTable
from cockpit.logs.flatten import records_to_frames
from cockpit.logs.schema import ERROR, META_FILE, STEPS_FILE

__all__ = ["MAX_LINE_BYTES", "LogReader", "Run", "load", "records_to_frames"]

#: Longest line of ``steps.jsonl`` decoded; longer ones are skipped with a warning,
#: read in blocks and never held whole. A step of the ``full`` preset on a model of
#: a million parameters takes a few kilobytes; decoding a line takes about ten
#: times its length in memory.
MAX_LINE_BYTES = 16 * 2**20
_BLOCK = 2**20


def _not_a_run(run_dir: Path) -> LogFormatError:
    runs = []
    if run_dir.is_dir():
        runs = sorted(p.name for p in run_dir.iterdir() if (p / META_FILE).is_file())
    hint = f" It holds the runs: {', '.join(runs)}." if runs else ""
    return LogFormatError(
        f"Expected a run directory containing {META_FILE} and {STEPS_FILE}, got "
        f"{run_dir}; pass one run directory, e.g. runs/<name>.{hint}"
    )


class LogReader:
    """Read one run directory, returning only what is new on each call.

    Args:
        run_dir: The run directory.
        root: If given, the run's files must lie under it: a symbolic link leading
            elsewhere is refused, not followed (the dashboard passes its LOGDIR).
        max_line_bytes: Longest line decoded (:data:`MAX_LINE_BYTES`).
        quiet: Skip corrupt lines without a warning (for a second reader of lines
            whose warnings were given already).

    Attributes:
        run_dir: The run directory.
        root: The resolved ``root``, or ``None``.
        offset: Bytes of ``steps.jsonl`` consumed so far; only complete lines count.

    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        quiet: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self.root = None if root is None else Path(root).resolve()
        self._max_line = max_line_bytes
        self._lines_read = 0
        self._quiet = quiet
        self._notes = NoteTable()

    @property
    def lines(self) -> int:
        """Lines of ``steps.jsonl`` consumed so far (numbering corrupt lines)."""
        return self._lines_read

    @property
    def notes(self) -> dict[str, str]:
        """Each path's last noted reason up to :attr:`offset` (a copy).

        What format 3.0's records leave out (``cockpit.logs._note_table``).
        """
        return dict(self._notes.known)

    def skip_to(
        self, offset: int, lines: int, notes: dict[str, str] | None = None
    ) -> None:
        """Go on reading at byte ``offset``, the end of line ``lines``.

        For a reader that has the records before ``offset`` from elsewhere (the
        columnar cache, ``cockpit.logs._columns``).

        Args:
            offset: The byte to go on at.
            lines: Lines before it.
            notes: :attr:`notes` at ``offset``; ``None`` keeps the reader's.

        """
        self.offset, self._lines_read = offset, lines
        if notes is not None:
            self._notes = NoteTable(notes)

    def _file(self, name: str) -> Path:
        """The path to open for the run's file ``name``, checked against ``root``.

        Raises:
            LogFormatError: If it is a directory, or leads outside ``root``.

        """
        path = self.run_dir / name
        resolved = path.resolve()
        if self.root is not None and not resolved.is_relative_to(self.root):
            raise LogFormatError(
                f"Refused {path}: it is a symbolic link leading outside "
                f"{self.root}; only files under it are read."
            )
        if resolved.is_dir():
            raise LogFormatError(f"{path} is a directory, expected a file.")
        return resolved

    def meta(self) -> dict[str, Any]:
        """Read ``meta.json``; fields readers use that have a wrong type are dropped.

        Raises:
            LogFormatError: If it is missing, not a JSON object, or in a newer major
                format version.

        """
        path = self.run_dir / META_FILE
        try:
            text = self._file(META_FILE).read_bytes()
        except FileNotFoundError:
            raise _not_a_run(self.run_dir) from None
        except OSError as err:
            raise LogFormatError(f"Cannot read {path}: {err.strerror}.") from None
        try:
            meta = orjson.loads(text)
        except ValueError as err:
            raise LogFormatError(
                f"{path} is not valid JSON ({err}); the run directory is damaged."
            ) from None
        if not isinstance(meta, dict):
            raise LogFormatError(
                f"{path} must hold a JSON object, got {type(meta).__name__}; the run "
                "directory is damaged."
            )
        check_version(meta, self.run_dir)
        return checked_meta(meta, self.run_dir)

    def unread_bytes(self) -> int:
        """Bytes of ``steps.jsonl`` after :attr:`offset`; 0 if there is no such file."""
        try:
            return max((self.run_dir / STEPS_FILE).stat().st_size - self.offset, 0)
        except FileNotFoundError:
            return 0

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Return the records completed since the last call, in file order.

        Args:
            max_bytes: Stop after the line that reaches this many bytes read; the
                rest waits for the next call. ``None``: read to the end.

        """
        return [
            record for chunk in self.chunks(max_bytes=max_bytes) for record in chunk
        ]

    def chunks(
        self,
        size: int | None = None,
        progress: Callable[[int], object] | None = None,
        max_bytes: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """The records completed since the last call, ``size`` at a time.

        :attr:`offset` moves on as chunks are handed out, so a loop stopped early
        goes on where it stopped at the next call.

        Args:
            size: Records per chunk; ``None`` for one chunk of all of them.
            progress: Called with the bytes read for each chunk.
            max_bytes: As for :meth:`read_new`.

        Yields:
            Lists of decoded records, in file order; none if nothing is new.

        Raises:
            LogFormatError: If ``steps.jsonl`` is a directory or (with ``root``)
                leads outside it.

        """
        try:
            file = self._file(STEPS_FILE).open("rb")
        except FileNotFoundError:
            return
        with file:
            file.seek(self.offset)
            name = str(self.run_dir / STEPS_FILE)
            yield from self._chunks(file, name, size, progress, max_bytes)

    def _chunks(
        self,
        file: BinaryIO,
        name: str,
        size: int | None,
        progress: Callable[[int], object] | None,
        max_bytes: int | None,
    ) -> Iterator[list[dict[str, Any]]]:
        records: list[dict[str, Any]] = []
        start = offset = self.offset
        lines, read = self._lines_read, 0
        corrupt = _Corrupt(name, self._quiet)
        while max_bytes is None or offset - start < max_bytes:
            raw = file.readline(self._max_line + 1)
            length = len(raw)
            if not raw.endswith(b"\n"):
                if length <= self._max_line:
                    break  # still being written: left for a later call
                length += _skip_line(file)
                if length == len(raw):
                    break  # a long line still being written
            lines += 1
            offset += length
            read += length
            if length > self._max_line:
                corrupt.add(
                    lines, f"{length:,} bytes, over the limit of {self._max_line:,}"
                )
            elif raw.strip():
                try:
                    record = decode_line(raw)
                except (ValueError, RecursionError) as err:
                    corrupt.add(lines, str(err))
                else:
                    self._notes.expand(record)
                    records.append(record)
            if size is not None and len(records) >= size:
                self.offset, self._lines_read = offset, lines
                if progress is not None:
                    progress(read)
                yield records
                records, read = [], 0
        self.offset, self._lines_read = offset, lines
        corrupt.summarize()
        if progress is not None and read:
            progress(read)
        if records:
            yield records


def _skip_line(file: BinaryIO) -> int:
    """Read on to the end of the current line in blocks; bytes read (0 at its end).

    If the file ends before the newline, the file position is where it was.
    """
    start = file.tell()
    skipped = 0
    while block := file.read(_BLOCK):
        newline = block.find(b"\n")
        if newline >= 0:
            file.seek(start + skipped + newline + 1)
            return skipped + newline + 1
        skipped += len(block)
    file.seek(start)
    return 0


class _Corrupt:
    """Warns of the first corrupt lines of one read, then only counts them.

    A :class:`CorruptLogWarning` for each of the first :data:`_WARNED` (line number
    and why), then one for the rest: a log of a million bad lines costs one summary,
    not a million messages.
    """

    def __init__(self, path: str, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet
        self.warned = 0
        self.unwarned: list[int] = []  # the first and the last line not warned of
        self.count = 0

    def add(self, number: int, problem: str) -> None:
        if self.quiet:
            return
        if self.warned < _WARNED:
            self.warned += 1
            _warn(f"Skipped corrupt line {number} of {self.path}: {problem}")
            return
        self.count += 1
        self.unwarned = [self.unwarned[0] if self.unwarned else number, number]

    def summarize(self) -> None:
        if self.count:
            _warn(
                f"Skipped {self.count} more corrupt lines of {self.path}, lines "
                f"{self.unwarned[0]} to {self.unwarned[-1]}."
            )


_WARNED = 20


def _warn(message: str) -> None:
    warnings.warn(message, CorruptLogWarning, stacklevel=6)


@dataclass
class Run:
    """One run, read whole.

    Attributes:
        path: The run directory.
        meta: Content of ``meta.json``.
        scalars: Columns ``step, quantity, layer, value``; layer ``None`` is the
            total over the model.
        histograms: Columns ``step, quantity, layer, edges, y_edges, counts,
            sample_size, total``; ``y_edges`` is ``None`` for 1D histograms. Built
            on first use where the columnar cache holds them (their lists are most
            of a long run's memory).
        errors: Records the writer could not log, each with an ``ERROR`` string.

    """

    path: Path
    meta: dict[str, Any]
    scalars: pd.DataFrame
    _histograms: pd.DataFrame | Callable[[], pd.DataFrame] = field(repr=False)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def histograms(self) -> pd.DataFrame:
        """The histogram frame (see the class's attributes)."""
        if callable(self._histograms):
            self._histograms = self._histograms()
        return self._histograms

    def scalar(self, quantity: str, layer: str | None = None) -> pd.Series:
        """Values of one quantity by step.

        Args:
            quantity: Quantity name, e.g. ``"loss"`` or ``"alpha.mean"``.
            layer: Parameter name; ``None`` for the total over the model.

        Returns:
            Float series indexed by ``step``, named after the quantity.

        Raises:
            KeyError: If the run has no such quantity, or not for that layer.

        """
        frame = self.scalars[self.scalars["quantity"] == quantity]
        if frame.empty:
            known = ", ".join(sorted(self.scalars["quantity"].unique()))
            raise KeyError(
                f"No scalar quantity {quantity!r} in {self.path}. Known: {known}."
            )
        layers = frame["layer"]
        rows = frame[layers.isna() if layer is None else layers == layer]
        if rows.empty:
            named = ", ".join(sorted(layers.dropna().unique()))
            raise KeyError(
                f"{quantity!r} in {self.path} has no values for layer {layer!r}. "
                f"Layers: {named or 'none'}; layer=None gives the total."
            )
        return pd.Series(
            rows["value"].to_numpy(),
            index=pd.Index(rows["step"].to_numpy(), name="step"),
            name=quantity,
        )


def load(run_dir: str | os.PathLike[str]) -> Run:
    """Read a whole run directory into pandas.

    The columnar cache (``cockpit.logs._columns``) gives the records it covers, and
    what this call decodes from the JSON lines after it is kept in the cache for the
    next call (where ``pyarrow`` is installed and the run directory is writable).

    Args:
        run_dir: One run directory, e.g. ``runs/<name>``.

    Returns:
        The run.

    Raises:
        LogFormatError: If ``run_dir`` holds no ``meta.json`` or one in a newer
            major format version.

    """
    reader = LogReader(run_dir)
    meta = reader.meta()
    segments = _columns.read_segments(reader)
    for segment in segments:
        for message in segment.warnings:
            _warn(message)
    start, start_lines = reader.offset, reader.lines
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = reader.read_new()
    warned = [str(w.message) for w in caught if w.category is CorruptLogWarning]
    for caught_warning in caught:
        warnings.warn_explicit(
            caught_warning.message,
            caught_warning.category,
            caught_warning.filename,
            caught_warning.lineno,
        )
    _columns.write_segment(reader, start, start_lines, records, warned)
    scalars, histograms = records_to_frames(records)
    errors = [e for s in segments for e in s.errors]
    errors += [record for record in records if ERROR in record]
    if not segments:
        return Run(Path(run_dir), meta, scalars, histograms, errors)
    cached, tables = _columns.segment_scalars(segments)  # lets the segments go
    return Run(
        Path(run_dir),
        meta,
        _joined(cached, scalars),
        lambda: _joined(_columns.segment_histograms(tables), histograms),
        errors,
    )


def _joined(cached: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The cached rows, then the new ones, with the new frame's column types."""
    if new.empty:
        return cached.astype(new.dtypes.to_dict()) if cached.empty else cached
    if cached.empty:
        return new
    return pd.concat([cached, new], ignore_index=True)
