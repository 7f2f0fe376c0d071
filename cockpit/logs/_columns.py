"""Columnar segments of ``steps.jsonl``: its numbers, kept for the next open.

Opening a long run is decoding JSON and sorting its numbers by quantity and layer in
Python: a 100,000-step ``economy`` run holds eight million numbers, about a minute.
The writer keeps them as it writes (:mod:`cockpit.logs._segments`), and a reader
that has decoded at least :data:`MIN_SEGMENT_BYTES` of ``steps.jsonl`` in one read
keeps what it decoded: the rows of :func:`~cockpit.logs.flatten.flatten_rows`, as an
Arrow IPC file in ``RUN/.columns/``, named by the byte range it covers
(``<start>-<end>.arrow``, :func:`save_segment`); the next reader maps those
files, in a fraction of a second, and decodes only the lines after the last one. The files are not
compressed, so mapping them copies nothing (they take about three quarters of the
JSON's bytes; zstd would make that a third, and cost seconds per 100,000 steps to
decompress).

``steps.jsonl`` stays the source of truth and is never changed:

* a segment is used only if the bytes it covers are still the same: its range ends
  inside the file, and the CRC-32 of the last :data:`_CHECKED_BYTES` of the range
  (written with the segment) matches. A log truncated or rewritten since drops the
  segment and every later one, and the reader decodes the JSON from there;
* segments chain from byte 0, each starting where the one before ends;
* a segment is written to a temporary file and renamed into place, so a reader never
  sees half of one; two readers writing the same range write the same content;
* one that cannot be read (damaged, another format, not Arrow) is ignored, and
  nothing in it is executed: it holds numbers, strings and JSON bytes;
* without ``pyarrow``, or where the run directory cannot be written (a read-only
  copy), readers decode the JSON as before.

The corrupt-line warnings and the writer's error records of a covered range are kept
in the segment and given again, so a reader of the cache sees what a reader of the
JSON would.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from cockpit.logs._packing import pack_counts, pack_edges, unpack
from cockpit.logs.flatten import (
    HISTOGRAM_COLUMNS,
    SCALAR_COLUMNS,
    HistogramRow,
    ScalarRow,
    flatten_rows,
)
from cockpit.logs.schema import COUNTS, EDGES, ERROR, STEP, STEPS_FILE, Y_EDGES

if TYPE_CHECKING:
    import pyarrow as pa

    from cockpit.logs.reader import LogReader

__all__ = [
    "COLUMNS_DIR",
    "MIN_SEGMENT_BYTES",
    "Segment",
    "Span",
    "read_segments",
    "save_segment",
    "segment_columns",
    "segment_histograms",
    "segment_scalars",
    "write_segment",
]

#: The folder of a run directory holding the segments.
COLUMNS_DIR = ".columns"
#: Bytes of ``steps.jsonl`` one read must have decoded for its segment to be kept:
#: below, decoding the JSON again costs less than a file.
MIN_SEGMENT_BYTES = 2**20
#: Bytes at the end of a segment's range whose CRC-32 the segment carries.
_CHECKED_BYTES = 2**16
# 2: histogram cells packed as in the log (format 2.0); 3: counts packed as in format
# 3.0, and the notes known at the segment's end (``cockpit.logs._note_table``)
_VERSION = b"3"
_SUFFIX = ".arrow"


def _pyarrow() -> Any:
    """``pyarrow``, or ``None`` where it is not installed (the cache is then off)."""
    try:
        import pyarrow
        import pyarrow.ipc
    except ImportError:
        return None
    return pyarrow


@dataclass
class Segment:
    """The rows decoded from one byte range of ``steps.jsonl``.

    Attributes:
        start: First byte of the range.
        end: Byte after its last line's newline.
        lines: Lines of ``steps.jsonl`` up to ``end``, for line numbers in warnings.
        table: One row per scalar and histogram row of ``flatten_rows``, each kind
            in record order, the scalars first (:func:`_table`).
        scalar_rows: How many rows of ``table`` are scalars.
        errors: The writer's error records in the range.
        warnings: The corrupt-line warnings its reader gave.
        notes: Each path's last noted reason at ``end`` (``LogReader.notes``).

    """

    start: int
    end: int
    lines: int
    table: pa.Table
    scalar_rows: int
    errors: list[dict[str, Any]]
    warnings: list[str]
    notes: dict[str, str]

    def scalars(self) -> pa.Table:
        """The scalar rows."""
        return self.table.slice(0, self.scalar_rows)

    def histograms(self) -> pa.Table:
        """The histogram rows."""
        return self.table.slice(self.scalar_rows)


def _folder(reader: LogReader) -> Path:
    return reader.run_dir / COLUMNS_DIR


def _crc(path: Path, end: int) -> int:
    """CRC-32 of the :data:`_CHECKED_BYTES` of ``path`` before byte ``end``."""
    start = max(0, end - _CHECKED_BYTES)
    with path.open("rb") as file:
        file.seek(start)
        data = file.read(end - start)
    if len(data) != end - start or not data.endswith(b"\n"):
        raise ValueError("the log is shorter than the segment")
    return zlib.crc32(data)


def _table(
    pa: Any, scalars: list[ScalarRow], histograms: list[HistogramRow]
) -> pa.Table:
    """The rows as one table, scalar rows first.

    Columns ``step, quantity, layer, value, histogram``; ``histogram`` is the JSON of
    a histogram row's ``[edges, y_edges, counts, sample_size, total]``, edges and
    counts packed as in the log (``cockpit.logs._packing``; null in scalar rows),
    ``value`` is NaN in histogram rows.
    """
    step = [r[0] for r in scalars] + [r[0] for r in histograms]
    quantity = [r[1] for r in scalars] + [r[1] for r in histograms]
    layer = [r[2] for r in scalars] + [r[2] for r in histograms]
    value = [r[3] for r in scalars] + [math.nan] * len(histograms)
    blobs = [None] * len(scalars) + [_blob(*r[3:]) for r in histograms]
    return pa.table(
        {
            "step": pa.array(step, pa.int64()),
            "quantity": _dictionary(pa, quantity),
            "layer": _dictionary(pa, layer),
            "value": pa.array(value, pa.float64()),
            "histogram": pa.array(blobs, pa.binary()),
        }
    )


def _dictionary(pa: Any, words: list[str | None]) -> pa.DictionaryArray:
    """``words`` dictionary-encoded, with 16-bit indices where they fit."""
    encoded = pa.array(words, pa.string()).dictionary_encode()
    if len(encoded.dictionary) < 2**15:
        encoded = encoded.cast(pa.dictionary(pa.int16(), pa.string()))
    return encoded


def _blob(edges: Any, y_edges: Any, counts: Any, *numbers: float) -> bytes:
    """The ``histogram`` cell of a histogram row (:func:`_table`)."""
    packed = [pack_edges(edges), pack_edges(y_edges), pack_counts(counts)]
    return orjson.dumps([*packed, *numbers])


def _histogram_row(blob: bytes) -> tuple[Any, Any, Any, float, float]:
    """``(edges, y_edges, counts, sample_size, total)`` of a ``histogram`` cell.

    JSON writes NaN as null; the two numbers are floats, NaN where missing.

    Raises:
        ValueError: If the cell is not JSON, or a packed part does not unpack.

    """
    edges, y_edges, counts, sample_size, total = orjson.loads(blob)
    lists = {EDGES: edges, Y_EDGES: y_edges, COUNTS: counts}
    unpack(lists)
    nan = math.nan
    return (
        lists[EDGES],
        lists[Y_EDGES],
        lists[COUNTS],
        nan if sample_size is None else sample_size,
        nan if total is None else total,
    )


def write_segment(
    reader: LogReader,
    start: int,
    start_lines: int,
    records: list[dict[str, Any]],
    warned: list[str],
) -> Segment | None:
    """Keep what ``reader`` decoded from ``start`` to its offset, if worth a file.

    Args:
        reader: The reader, right after the read.
        start: Its offset before the read.
        start_lines: Its line count before the read.
        records: The records the read returned.
        warned: The corrupt-line warnings the read gave.

    Returns:
        The segment written (its table in memory), or ``None`` if none was: too
        short a read, no ``pyarrow``, or a run directory that cannot be written
        (never an exception).

    """
    if reader.offset - start < MIN_SEGMENT_BYTES:
        return None
    span = Span(start, reader.offset, start_lines, reader.lines)
    rows = flatten_rows(records)
    errors = [r for r in records if ERROR in r]
    return save_segment(
        reader.run_dir, reader.root, span, rows, errors, warned, reader.notes
    )


@dataclass(frozen=True)
class Span:
    """The lines of ``steps.jsonl`` a segment covers.

    Bytes ``start`` to ``end``: the lines after line ``start_lines`` up to line
    ``lines``.
    """

    start: int
    end: int
    start_lines: int
    lines: int


def save_segment(
    run_dir: Path,
    root: Path | None,
    span: Span,
    rows: tuple[list[ScalarRow], list[HistogramRow]],
    errors: list[dict[str, Any]],
    warned: list[str],
    notes: dict[str, str],
) -> Segment | None:
    """Write the segment of ``span`` into ``run_dir/.columns`` (any length).

    Args:
        run_dir: The run directory.
        root: If given, the segment's folder must resolve under it.
        span: The lines covered; they must be in ``steps.jsonl`` already.
        rows: ``flatten_rows`` of their records.
        errors: Their writer's error records.
        warned: The corrupt-line warnings reading them gave.
        notes: The notes known after the last line (``LogReader.notes``).

    Returns:
        The segment written, or ``None`` (no ``pyarrow``, or it could not be
        written; never an exception).

    """
    pa = _pyarrow()
    if pa is None:
        return None
    folder = run_dir / COLUMNS_DIR
    scalars, histograms = rows
    try:
        folder.mkdir(exist_ok=True)
        if root is not None and not folder.resolve().is_relative_to(root):
            return None
        metadata = {
            b"cockpit_columns": _VERSION,
            b"crc32": str(_crc(run_dir / STEPS_FILE, span.end)).encode(),
            b"lines": str(span.lines).encode(),
            b"scalar_rows": str(len(scalars)).encode(),
            b"start_lines": str(span.start_lines).encode(),
            b"errors": orjson.dumps(errors),
            b"warnings": orjson.dumps(warned),
            b"notes": orjson.dumps(notes),
        }
        table = _table(pa, scalars, histograms).replace_schema_metadata(metadata)
        fd, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with (
                os.fdopen(fd, "wb") as file,
                pa.ipc.new_file(file, table.schema) as sink,
            ):
                sink.write_table(table)
            os.replace(temporary, folder / f"{span.start}-{span.end}{_SUFFIX}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    except (OSError, ValueError, pa.ArrowException):
        return None
    return Segment(
        span.start, span.end, span.lines, table, len(scalars), errors, warned, notes
    )


def _ranges(folder: Path) -> dict[int, list[int]]:
    """Start -> ends of the segment files in ``folder``."""
    found: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            bounds = path.name.removesuffix(_SUFFIX).split("-")
            if path.suffix == _SUFFIX and [b.isdigit() for b in bounds] == [True] * 2:
                start, end = map(int, bounds)
                if end > start:
                    found.setdefault(start, []).append(end)
    return found


def _reach(ranges: dict[int, list[int]]) -> dict[int, int]:
    """Start -> the furthest byte a chain of segments from there reaches."""
    reach: dict[int, int] = {}
    for start in sorted(ranges, reverse=True):  # each end's chain is known first
        reach[start] = max(reach.get(end, end) for end in ranges[start])
    return reach


def _open(pa: Any, reader: LogReader, start: int, end: int) -> Segment | None:
    """The segment of ``start``-``end`` if it still matches the log, else ``None``."""
    path = _folder(reader) / f"{start}-{end}{_SUFFIX}"
    try:
        if reader.root is not None and not path.resolve().is_relative_to(reader.root):
            return None
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        meta = table.schema.metadata or {}
        if meta.get(b"cockpit_columns") != _VERSION or not _well_formed(pa, table):
            return None
        if int(meta[b"crc32"]) != _crc(reader.run_dir / STEPS_FILE, end):
            return None
        segment = Segment(
            start,
            end,
            int(meta[b"lines"]),
            table,
            int(meta[b"scalar_rows"]),
            orjson.loads(meta[b"errors"]),
            orjson.loads(meta[b"warnings"]),
            orjson.loads(meta[b"notes"]),
        )
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    lists = (
        isinstance(segment.errors, list)
        and all(
            isinstance(r, dict) and STEP in r and ERROR in r for r in segment.errors
        )
        and isinstance(segment.warnings, list)
        and all(isinstance(w, str) for w in segment.warnings)
        and isinstance(segment.notes, dict)
        and all(isinstance(n, str) for n in segment.notes.values())
    )
    rows = 0 <= segment.scalar_rows <= table.num_rows
    return segment if lists and rows and segment.lines >= 0 else None


def _well_formed(pa: Any, table: pa.Table) -> bool:
    """Whether ``table`` has the columns and types :func:`_table` writes."""
    types = pa.types
    checks = {
        "step": types.is_int64,
        "quantity": lambda t: types.is_dictionary(t) and types.is_string(t.value_type),
        "layer": lambda t: types.is_dictionary(t) and types.is_string(t.value_type),
        "value": types.is_float64,
        "histogram": types.is_binary,
    }
    schema = table.schema
    return schema.names == list(checks) and all(
        check(schema.field(name).type) for name, check in checks.items()
    )


def read_segments(reader: LogReader, max_bytes: int | None = None) -> list[Segment]:
    """The segments that continue ``reader`` from its offset; moves it past them.

    Args:
        reader: A reader; its offset and line count move to the end of the last
            segment returned.
        max_bytes: Stop after the segment that reaches this many bytes of
            ``steps.jsonl``; ``None``: every one.

    Returns:
        The segments, in log order; none without ``pyarrow`` or a cache. Where
        segments overlap (the writer's and a reader's), the chain that reaches
        furthest is taken.

    """
    pa = _pyarrow()
    if pa is None:
        return []
    ranges = _ranges(_folder(reader))
    reach = _reach(ranges)
    segments: list[Segment] = []
    start = reader.offset
    while ranges.get(reader.offset) and (
        max_bytes is None or reader.offset - start < max_bytes
    ):
        segment = None
        ends = ranges[reader.offset]
        for end in sorted(ends, key=lambda e: (reach.get(e, e), e), reverse=True):
            segment = _open(pa, reader, reader.offset, end)
            if segment is not None:
                break
        if segment is None:
            break
        segments.append(segment)
        reader.skip_to(segment.end, segment.lines, segment.notes)
    return segments


def _strings(column: Any) -> np.ndarray:
    """A dictionary column as an object array; null as ``None``."""
    column = column.combine_chunks()
    words = np.array([*column.dictionary.to_pylist(), None], dtype=object)
    indices = column.indices.fill_null(len(words) - 1).to_numpy()
    return words[indices]


def segment_scalars(segments: list[Segment]) -> tuple[pd.DataFrame, list[pa.Table]]:
    """The scalar frame of ``records_to_frames`` for the segments' records.

    Each segment's numbers are copied into columns of the whole frame, and the
    segment is then taken out of ``segments`` and let go, its histogram rows
    copied: no more than one mapped file is held beside the frame (a run's
    segments take about as much memory as the frame, and a frame of many segments
    concatenated would be a second copy).

    Args:
        segments: The segments, in log order; emptied.

    Returns:
        ``(scalars, histograms)``: the frame, with the names as object arrays, and
        each segment's :meth:`Segment.histograms` (copies).

    """
    total = sum(segment.scalar_rows for segment in segments)
    columns = {
        "step": np.empty(total, np.int64),
        "quantity": np.empty(total, object),
        "layer": np.empty(total, object),
        "value": np.empty(total, np.float64),
    }
    histograms, start = [], 0
    while segments:
        table = segments[0].scalars()
        end = start + table.num_rows
        columns["step"][start:end] = table["step"].to_numpy()
        columns["quantity"][start:end] = _strings(table["quantity"])
        columns["layer"][start:end] = _strings(table["layer"])
        columns["value"][start:end] = table["value"].to_numpy()
        histograms.append(_copied(segments.pop(0).histograms()))
        del table
        start = end
    frame = {
        name: pd.Series(array, dtype=array.dtype, copy=False)
        for name, array in columns.items()
    }
    return pd.DataFrame(frame, columns=SCALAR_COLUMNS, copy=False), histograms


def _copied(table: pa.Table) -> pa.Table:
    """``table`` in memory of its own: nothing of it keeps a mapped file mapped."""
    pa = _pyarrow()
    every = pa.array(np.arange(table.num_rows))
    columns = {}
    for name in table.column_names:
        column = table[name].combine_chunks()
        if pa.types.is_dictionary(column.type):  # decoding copies, encoding anew
            columns[name] = column.dictionary_decode().dictionary_encode()
        else:
            columns[name] = column.take(every)
    return pa.table(columns)


def segment_histograms(tables: list[pa.Table]) -> pd.DataFrame:
    """The histogram frame of ``records_to_frames`` for histogram rows.

    Args:
        tables: :meth:`Segment.histograms` of each segment, in log order.

    """
    frames = []
    for table in tables:
        blobs = table["histogram"].to_pylist()
        edges, y_edges, counts, sample_size, total = zip(
            *map(_histogram_row, blobs), strict=True
        )
        data = {
            "step": pd.Series(table["step"].to_numpy(), dtype="int64"),
            "quantity": pd.Series(_strings(table["quantity"]), dtype=object),
            "layer": pd.Series(_strings(table["layer"]), dtype=object),
            "edges": pd.Series(_objects(edges), dtype=object),
            "y_edges": pd.Series(_objects(y_edges), dtype=object),
            "counts": pd.Series(_objects(counts), dtype=object),
            "sample_size": pd.Series(sample_size, dtype="float64"),
            "total": pd.Series(total, dtype="float64"),
        }
        frames.append(pd.DataFrame(data, columns=HISTOGRAM_COLUMNS))
    return _concat(frames, HISTOGRAM_COLUMNS)


def _objects(items: tuple[Any, ...]) -> np.ndarray:
    """``items`` (lists or ``None``) as a one-dimensional object array."""
    return np.fromiter(items, dtype=object, count=len(items))


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


Key = tuple[str, str | None]
"""``(quantity, layer)``; layer ``None`` is the whole model."""


@dataclass
class HistogramColumn:
    """The histograms of one quantity and layer in a segment, decoded on demand.

    Attributes:
        steps: ``[H]`` their steps, in record order.
        blobs: The segment's ``histogram`` column.
        rows: ``[H]`` their rows in ``blobs``.

    """

    steps: np.ndarray
    blobs: Any
    rows: np.ndarray

    def row(self, index: int) -> tuple[Any, Any, Any]:
        """``(edges, y_edges, counts)`` of the ``index``-th histogram, as logged."""
        blob = self.blobs[int(self.rows[index])].as_py()
        edges, y_edges, counts, *_ = _histogram_row(blob)
        return edges, y_edges, counts


def segment_columns(
    segment: Segment,
) -> tuple[dict[Key, tuple[np.ndarray, np.ndarray]], dict[Key, HistogramColumn]]:
    """A segment's numbers by quantity and layer, as ``flatten_columns`` sorts them.

    Returns:
        ``(columns, histograms)``: ``(steps, values)`` arrays (values: views of one
        sorted copy of the segment's numbers; steps: one array for all keys with
        the same steps, as most have, since a record holds every quantity due) and
        the histograms of each ``(quantity, layer)``, in the order the keys first
        appear.

    """
    scalars, histograms = segment.scalars(), segment.histograms()
    order, groups = _groups(scalars)
    raw_steps = scalars["step"].to_numpy()
    value = np.take(scalars["value"].to_numpy(), order)
    shared: dict[bytes, np.ndarray] = {}
    columns = {}
    for key, rows in groups:
        steps = raw_steps[order[rows]]
        steps = shared.setdefault(steps.tobytes(), steps)
        columns[key] = (steps, value[rows])
    order, groups = _groups(histograms)
    step = histograms["step"].to_numpy()
    blobs = histograms["histogram"].combine_chunks()
    return columns, {
        key: HistogramColumn(step[order[rows]], blobs, order[rows])
        for key, rows in groups
    }


def _groups(table: pa.Table) -> tuple[np.ndarray, list[tuple[Key, slice]]]:
    """The rows of ``table`` sorted by ``(quantity, layer)``, record order kept within.

    Returns:
        ``(order, groups)``: the row indices in that order, and each key's slice of
        them, the keys in the order they first appear.

    """
    if not table.num_rows:
        return np.empty(0, np.int64), []
    quantity = table["quantity"].combine_chunks()
    layer = table["layer"].combine_chunks()
    quantities = quantity.dictionary.to_pylist()
    layers = [*layer.dictionary.to_pylist(), None]
    width = len(layers)
    wide = np.int64 if len(quantities) * width >= 2**31 else np.int32
    codes = quantity.indices.to_numpy().astype(wide) * width
    codes += layer.indices.fill_null(width - 1).to_numpy()
    if codes.max() < 2**16:  # a stable sort of 16-bit integers is a radix sort
        codes = codes.astype(np.uint16)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    present = np.flatnonzero(counts)
    ends = np.cumsum(counts[present]).tolist()
    starts = [0, *ends[:-1]]
    named = [
        ((quantities[code // width], layers[code % width]), slice(start, end))
        for code, start, end in zip(present.tolist(), starts, ends, strict=True)
    ]
    named.sort(key=lambda item: order[item[1].start])
    return order, named
