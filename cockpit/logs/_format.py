"""The log format, shared by the writer and the reader.

A run is a directory holding ``meta.json`` (one JSON object, rewritten atomically)
and ``steps.jsonl`` (one JSON object per line, appended); ``cockpit.logs.schema``
names their keys. A line looks like::

    {"step":12,"time":1700000000.0,"values":{"loss":null,"grad_norm":{"total":3.1}},
     "nonfinite":["loss"]}

JSON has no NaN or infinity, so non-finite numbers under ``"values"`` are written as
``null`` and their dotted paths (relative to ``"values"``) listed in ``"nonfinite"``.
Histograms under ``"values"`` are written short (:func:`compact`): counts as integers,
packed, and equal-width edges as their ends (:mod:`cockpit.logs._packing`), and a
per-layer histogram leaves out edges equal to the whole model's (readers take those).
Format 3.0 also names a record's parameters once (``cockpit.logs._layer_table``) and
leaves out the notes a reader can tell (``cockpit.logs._note_table``, given to
:func:`encode_record` by the writer and kept by ``LogReader``). :func:`decode_line`
undoes the rest, so readers see the records of format 1.0, whatever the format.
Floats keep their shortest exact representation: a float64 model's statistics are
float64, and rounding them would lose what they are checked to; statistics of float32
tensors reach the writer already as the shortest decimal of their float32 value
(``cockpit._record``), at most 9 significant digits.
Path syntax: dict keys joined by ``.``, list indices as ``[i]``, e.g.
``grad_norm.per_layer.0.weight`` or ``grad_hist_1d.counts[3]``.

:data:`FORMAT_VERSION` is ``MAJOR.MINOR``: a minor bump only adds keys that old readers
may ignore; a major bump breaks old readers, which then refuse the run.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from cockpit.exceptions import LogFormatError
from cockpit.logs._layer_table import expand_layers, factor_layers
from cockpit.logs._note_table import NoteTable
from cockpit.logs._packing import (
    MARKERS,
    pack_counts,
    pack_edges,
    pack_together,
    unpack,
)
from cockpit.logs.schema import (
    COUNTS,
    EDGES,
    LAYERS,
    META_FILE,
    NONFINITE,
    NOTES,
    PER_LAYER,
    STEP,
    VALUES,
    X_EDGES,
    Y_EDGES,
)

FORMAT_VERSION = "3.0"
_EDGE_KEYS = (EDGES, X_EDGES, Y_EDGES)
_EXACT_INTEGERS = 2.0**53

_SEPARATORS = (",", ":")
_NUMBER_TYPES = frozenset({int, float})
#: Values :func:`compact` leaves as they are, and the keys whose values it packs.
_PLAIN_TYPES = frozenset({int, float, bool, str, type(None)})
_PACKED_KEYS = frozenset({COUNTS, *_EDGE_KEYS})


def parse_version(version: object) -> tuple[int, int]:
    """Split a ``"MAJOR.MINOR"`` version string into integers.

    Args:
        version: The version as found in ``meta.json``.

    Returns:
        ``(major, minor)``.

    Raises:
        ValueError: If ``version`` is not a ``"MAJOR.MINOR"`` string.

    """
    if isinstance(version, str):
        parts = version.split(".")
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            return int(parts[0]), int(parts[1])
    raise ValueError(f"expected a 'MAJOR.MINOR' string, got {version!r}")


def check_version(meta: dict[str, Any], run_dir: str | os.PathLike[str]) -> None:
    """Refuse a run written in a format this cockpit cannot read.

    Args:
        meta: The run's ``meta.json`` content.
        run_dir: The run directory, named in the error message.

    Raises:
        LogFormatError: If the format version is missing, malformed, or has a newer
            major version than :data:`FORMAT_VERSION`.

    """
    found = meta.get("format_version")
    try:
        major, _ = parse_version(found)
    except ValueError as err:
        raise LogFormatError(
            f"{META_FILE} in {os.fspath(run_dir)} has no valid 'format_version' "
            f"({err}); expected a run directory written by cockpit."
        ) from None
    ours, _ = parse_version(FORMAT_VERSION)
    if major > ours:
        raise LogFormatError(
            f"Run {os.fspath(run_dir)} was written in log format {found}, but this "
            f"cockpit reads format {ours}.x (up to {FORMAT_VERSION}); "
            "upgrade cockpit to read it (pip install -U cockpit-live)."
        )


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def to_python(
    value: Any,
    path: str,
    nonfinite: list[str],
    fallback: Callable[[Any], Any] | None = None,
) -> Any:
    """Convert ``value`` to JSON-ready Python, replacing non-finite floats by ``None``.

    Args:
        value: Nested dicts, lists and tuples of numbers, bools, strings, ``None``,
            numpy scalars and numpy arrays.
        path: Dotted path of ``value``, recorded for non-finite numbers.
        nonfinite: Receives the path of each non-finite number replaced.
        fallback: Converts values of any other type; without it they raise.

    Returns:
        The converted value: only dicts with string keys, lists, ``int``, ``float``,
        ``bool``, ``str`` and ``None``; it may share lists with ``value``.

    Raises:
        TypeError: If a value has an unsupported type and no ``fallback`` is given.

    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        nonfinite.append(path)
        return None
    if isinstance(value, dict):
        if _plain(value):
            return dict(value)
        return {
            str(key): to_python(item, _join(path, str(key)), nonfinite, fallback)
            for key, item in value.items()
        }
    if isinstance(value, list) and _NUMBER_TYPES.issuperset(map(type, value)):
        return _numbers(value, path, nonfinite)
    if isinstance(value, (list, tuple)):
        return [
            to_python(item, f"{path}[{index}]", nonfinite, fallback)
            for index, item in enumerate(value)
        ]
    if fallback is not None:
        return fallback(value)
    raise TypeError(
        f"Cannot log {type(value).__name__} at {path or 'top level'!r}: expected "
        "numbers, bools, strings, None, lists, dicts or numpy arrays. Convert tensors "
        "to Python (e.g. .tolist()) in materialize()."
    )


def _plain(value: dict[Any, Any]) -> bool:
    """Whether ``value`` maps strings to finite numbers, or to strings and the like.

    The fast path of :func:`to_python` for the dicts that make most of a record
    (a value per parameter, a note per path): a few C-level passes instead of a
    call per entry. The sum of finite numbers is finite unless it overflows (then
    the slow path runs); a NaN or an infinity makes it non-finite.
    """
    if not {str}.issuperset(map(type, value)):
        return False
    types = set(map(type, value.values()))
    if float not in types:
        return _PLAIN_TYPES.issuperset(types)
    if not _NUMBER_TYPES.issuperset(types):
        return False
    try:
        return math.isfinite(sum(value.values()))
    except OverflowError:  # an int beyond a float's range
        return False


def _numbers(value: list[int | float], path: str, nonfinite: list[str]) -> list[Any]:
    """Fast path of :func:`to_python` for the long flat lists of histograms."""
    try:
        if math.isfinite(sum(value)):  # as in :func:`_plain`: all finite
            return value
    except OverflowError:  # an int beyond a float's range
        pass
    bad = [
        i
        for i, item in enumerate(value)
        if type(item) is float and not math.isfinite(item)
    ]
    if not bad:
        return value
    converted: list[Any] = list(value)
    for index in bad:
        converted[index] = None
        nonfinite.append(f"{path}[{index}]")
    return converted


def compact(value: Any) -> Any:
    """Shorter histograms for a record's converted ``"values"``, as the log writes them.

    Histogram counts (a
    :data:`COUNTS` list) are rounded to integers: they are estimated from samples
    that each count as at least one value, so the rounding error (under 1; the
    largest remainders round up, keeping the sum) is below the estimate's
    resolution; then packed (:func:`~cockpit.logs._packing.pack_counts`), a
    histogram's and its per-layer histograms' together where they have one shape
    (``pack_together``). Edges are packed where their ends reproduce them
    (``pack_edges``). A per-layer histogram drops edges equal to its whole
    model's, which readers take instead (``cockpit.logs.flatten``).

    Args:
        value: Output of :func:`to_python`.

    Returns:
        The compacted copy.

    """
    if isinstance(value, list):
        return [compact(item) for item in value]
    if not isinstance(value, dict):
        return value
    if _PLAIN_TYPES.issuperset(map(type, value.values())) and value.keys().isdisjoint(
        _PACKED_KEYS
    ):  # nothing to pack (a per-layer dict): one copy, no call per entry
        return dict(value)
    layers = value.get(PER_LAYER)
    if not (isinstance(layers, dict) and (EDGES in value or X_EDGES in value)):
        return {key: _compact_item(key, item) for key, item in value.items()}
    together = _counts_together(value, layers)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == COUNTS and together is not None:
            out[key] = together
        elif key != PER_LAYER:
            out[key] = _compact_item(key, item)
        else:
            out[key] = None  # below, once the whole's edges are packed
    out[PER_LAYER] = {
        name: _without_shared_edges(_layer(hist, together is not None), out)
        for name, hist in layers.items()
    }
    return out


def _compact_item(key: str, item: Any) -> Any:
    if key == COUNTS:
        return _counts(item)
    if key in _EDGE_KEYS:
        return pack_edges(item)
    return compact(item)


def _layer(hist: Any, without_counts: bool) -> Any:
    if without_counts and isinstance(hist, dict):
        hist = {key: item for key, item in hist.items() if key != COUNTS}
    return compact(hist)


def _counts_together(whole: dict[str, Any], layers: dict[str, Any]) -> Any:
    """The counts of ``whole`` and of each of its ``layers`` packed as one, or None."""
    hists = [whole, *layers.values()]
    if not all(isinstance(hist, dict) and COUNTS in hist for hist in hists):
        return None
    arrays = [_integer_counts(hist[COUNTS]) for hist in hists]
    if any(array is None for array in arrays):
        return None
    return pack_together(arrays)


def _integer_counts(value: Any) -> np.ndarray | None:
    """Integer counts with the same sum: floors, plus one for the largest remainders.

    ``None`` where ``value`` is not an array of finite numbers below 2**53.
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # ragged, or null where a count was not finite
        return None
    if not (
        np.isfinite(array).all() and np.abs(array).max(initial=0) < _EXACT_INTEGERS
    ):
        return None
    floors = np.floor(array)
    missing = round(float(array.sum() - floors.sum()))
    if missing > 0:
        largest = np.argsort(floors - array, axis=None, kind="stable")[:missing]
        floors.flat[largest] += 1
    return floors.astype(np.int64)


def _counts(value: Any) -> Any:
    """Integer counts (:func:`_integer_counts`), packed where they are 1D or 2D."""
    integers = _integer_counts(value)
    if integers is None:
        return compact(value)
    packed = pack_counts(integers)
    return integers.tolist() if packed is integers else packed


def _without_shared_edges(hist: Any, whole: dict[str, Any]) -> Any:
    if not isinstance(hist, dict):
        return hist
    return {
        key: item
        for key, item in hist.items()
        if key not in _EDGE_KEYS
        or item != whole.get(key)
        or (isinstance(item, list) and None in item)
    }


def _check_record(record: object) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"A log record must be a dict, got {type(record).__name__}.")
    step = record.get(STEP)
    if not isinstance(step, (int, np.integer)) or isinstance(step, (bool, np.bool_)):
        raise ValueError(f"A log record needs an integer {STEP!r}, got {step!r}.")
    if not isinstance(record.get(VALUES, {}), dict):
        raise ValueError(f"A log record's {VALUES!r} must be a dict.")
    previous = record.get(NONFINITE, [])
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        raise ValueError(f"A log record's {NONFINITE!r} must be a list of strings.")


def encode_record(
    record: dict[str, Any], notes: NoteTable | None = None
) -> tuple[str, list[str]]:
    """Encode one record as a JSON line, writing non-finite values as ``null``.

    Args:
        record: ``{"step": int, "time": float, "values": {...}}`` plus optional keys
            (e.g. ``"notes"``) that pass through; a ``"nonfinite"`` list it already
            carries is merged with the paths found here.
        notes: The run's notes so far: notes it expects are left out, and it learns
            the others. ``None`` writes the notes as they are, and ``{}`` where
            there are none but non-finite values, so the line reads alike wherever
            it is appended.

    Returns:
        The line (compact JSON, no trailing newline) and the paths, relative to
        ``"values"``, of the non-finite numbers replaced by ``null``.

    Raises:
        ValueError: If the record is not a dict with an integer ``"step"``, or a
            non-finite number appears outside ``"values"``.
        TypeError: If a value cannot be represented in JSON.

    """
    _check_record(record)
    found: list[str] = []
    outside: list[str] = []
    line: dict[str, Any] = {}
    if LAYERS in record:
        raise ValueError(
            f"A log record must not carry {LAYERS!r}: the writer names the layers."
        )
    for key, value in record.items():
        if key == VALUES:
            line[key], layers = factor_layers(compact(to_python(value, "", found)))
            if layers is not None:
                line[LAYERS] = layers
        elif key != NONFINITE:
            line[key] = to_python(value, key, outside)
    if outside:
        raise ValueError(
            f"Non-finite number outside {VALUES!r} at {', '.join(outside)}; only "
            "logged values may be non-finite."
        )
    merged = list(dict.fromkeys([*record.get(NONFINITE, []), *found]))
    if merged:
        line[NONFINITE] = merged
    if notes is not None:
        notes.shorten(line)
    elif NONFINITE in line and NOTES not in line:
        line[NOTES] = {}  # "none", not "as expected": a line that reads alike anywhere
    return _dumps(line), found


def _dumps(line: dict[str, Any]) -> str:
    """``line`` as compact JSON: orjson, or the standard library where orjson fails.

    orjson encodes a record many times faster than ``json.dumps``
    (``benchmarks/writer_work.py``, "encode and append"): time the writer's thread
    holds the GIL. Both write floats as their shortest round trip, so the values
    read back are the same bits. orjson writes non-ASCII text as UTF-8 rather than
    as escapes, and exponents as ``1e-5`` rather than ``1e-05``. What it refuses
    and ``json.dumps`` takes (integers beyond 64 bits) takes the standard library's
    path, which raises for anything JSON cannot hold.
    """
    try:
        return orjson.dumps(line).decode()
    except TypeError:
        return json.dumps(line, allow_nan=False, separators=_SEPARATORS)


def decode_line(line: str | bytes) -> dict[str, Any]:
    """Decode one line of ``steps.jsonl``.

    Args:
        line: One complete line, with or without its trailing newline.

    Returns:
        The record.

    Raises:
        ValueError: If the line is not UTF-8 JSON, not an object, has no integer
            ``"step"`` (in the int64 range), nests deeper than 1024 levels, holds a
            number beyond the range of a double (``1e999999`` is refused, not read
            as infinity), or a packed histogram that does not unpack.

    """
    record = orjson.loads(line)
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    values = record.get(VALUES)
    if LAYERS in record and isinstance(values, dict):
        expand_layers(values, record.pop(LAYERS))
    raw = line.encode() if isinstance(line, str) else line
    if isinstance(values, dict) and any(marker in raw for marker in MARKERS):
        unpack(values)
    step = record.get(STEP)
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"expected an integer {STEP!r}, got {short_repr(step)}")
    if not -(2**63) <= step < 2**63:
        raise ValueError(f"{STEP!r} {short_repr(step)} is out of the int64 range")
    return record


def short_repr(value: object) -> str:
    """``repr(value)``, cut to a few dozen characters for error messages."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = 40
    short.maxlist = short.maxdict = 4
    return short.repr(value)
