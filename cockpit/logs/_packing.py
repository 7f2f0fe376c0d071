"""Histograms packed short in ``steps.jsonl``, and unpacked by readers.

A ``full``-preset step of a small CNN was about 40 KB of JSON in format 1.0, most of
it histograms: 9,280 counts a step as JSON integers and 660 bin edges as 17-digit
floats. Formats 2.0 and 3.0 write both packed (sizes: the README's "The log"):

* counts (1D ``[B]`` or 2D ``[Bx][By]`` non-negative integers), in format 3.0, as
  ``{"shape": [B] or [Bx, By], "bits": TEXT}``, where ``TEXT`` is the base64
  (standard alphabet: no quote or backslash, so a JSON string as it is) of the
  counts' bit lengths, zlib-compressed, and their mantissas
  (:mod:`cockpit.logs._count_codec`). A histogram's per-layer histograms of its
  shape are packed with it, in one text (``"layers": L``, :func:`pack_together`),
  one zlib stream instead of ``1 + L``. Format 2.0 wrote ``{"shape", "packed":
  TEXT}``, ``TEXT`` the base64 of the zlib of the counts as little-endian
  ``uint64`` stored byte plane by byte plane; readers read both. Base85 would save
  6 % more, but Python decodes it in Python, base64 in C;
* bin edges that :func:`uniform_edges` reproduces from their ends (the tracker's
  ``bin_edges``, in float32 or float64) as ``"f32:<from>:<to>:<bins>"`` (or
  ``f64``); format 2.0 wrote ``{"from", "to", "bins", "float"}``. Other edges stay
  a list. Float32 edges unpack as the float32 values themselves (float32(0.1) as
  0.10000000149011612, not as the 0.1 it was written as): the numbers the tracker
  binned with, found without formatting each as a decimal (a hundred times slower).

Readers unpack in :func:`~cockpit.logs._format.decode_line` (:func:`unpack`), so every
reader sees the lists of format 1.0 and reads logs of every format alike. Packed
values that do not unpack (a damaged or hostile line) make the line corrupt
(``ValueError``); unpacking never allocates more than the shape announces, and the
shape is bounded by :data:`MAX_BINS`.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import orjson

from cockpit.logs._count_codec import decode_counts, decode_planes, encode_counts
from cockpit.logs.schema import COUNTS, EDGES, PER_LAYER, X_EDGES, Y_EDGES

__all__ = [
    "MARKERS",
    "MAX_BINS",
    "float32_shortest",
    "pack_counts",
    "pack_edges",
    "pack_together",
    "uniform_edges",
    "unpack",
]

#: Most bins (counts, or edges minus one) a packed histogram may announce.
MAX_BINS = 2**22
#: A packed line holds one of these keys (a cheap test before walking a record).
MARKERS = (b'"bits":', b'"f32:', b'"f64:', b'"bins":', b'"packed":')
_SHAPE, _BITS, _PLANES, _LAYERS = "shape", "bits", "packed", "layers"
_FROM, _TO, _BINS, _FLOAT = "from", "to", "bins", "float"
_EDGE_KEYS = frozenset({EDGES, X_EDGES, Y_EDGES})
_FLOATS = {32: np.float32, 64: np.float64}
_EDGE_TEXTS = {"f32:": 32, "f64:": 64}


def float32_shortest(values: Any) -> np.ndarray:
    """The float64 of each float32 value's shortest decimal that reads back exactly.

    At most 9 significant digits, where the float32 value as a float64 takes 17:
    ``float32(0.1)`` is 0.10000000149011612 as a float64, and 0.1 here.

    orjson writes a float32 array's shortest decimals in C and reads them back as
    float64: about 0.09 µs a value against 1.1 µs for numpy's ``astype(str)``
    (``benchmarks/float32_digits.py``, 200 values a call), time the log writer's
    thread holds the GIL the training thread needs. Non-finite values, which JSON
    cannot hold, keep their value.

    Args:
        values: Numbers (any shape); they are rounded to float32 first.

    Returns:
        float64 array of the same shape; each converts back to the same float32.

    """
    single = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(single)
    if not finite.all():
        widened = single.astype(np.float64)
        widened[finite] = float32_shortest(single[finite])
        return widened
    flat = np.ascontiguousarray(single.reshape(-1))  # orjson's layout
    text = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)
    return np.array(orjson.loads(text), dtype=np.float64).reshape(single.shape)


def uniform_edges(low: float, high: float, bins: int, bits: int) -> np.ndarray:
    """``[bins + 1]`` equal-width edges as the tracker computes them.

    ``low + (high - low) * (arange(bins) / bins)``, then ``high``, each operation
    rounded to ``bits``-bit floats (``cockpit.quantities.grad_hist_1d.bin_edges``).

    Returns:
        float64 array of those values.

    """
    dtype = _FLOATS[bits]
    low_, high_ = dtype(low), dtype(high)
    steps = np.arange(bins, dtype=dtype) / dtype(bins)
    return np.append(low_ + (high_ - low_) * steps, high_).astype(np.float64)


def pack_edges(edges: Any) -> Any:
    """``edges`` as ``"f<bits>:<from>:<to>:<bins>"`` if that reproduces them.

    The ends of float32 edges are written as their shortest float32 decimals.

    Float64 edges must be reproduced bit for bit; float32 edges as float32 values,
    written as such or as :func:`float32_shortest` (what the tracker logs).

    Args:
        edges: A histogram's bin edges as logged (a list of floats).

    Returns:
        The packed form, or ``edges`` unchanged.

    """
    if not isinstance(edges, list) or not 2 <= len(edges) <= MAX_BINS + 1:
        return edges
    if not all(type(edge) is float for edge in edges):
        return edges
    array = np.asarray(edges, dtype=np.float64)
    if not np.isfinite(array).all():
        return edges
    for bits, dtype in _FLOATS.items():
        uniform = uniform_edges(edges[0], edges[-1], len(edges) - 1, bits)
        if not np.array_equal(uniform, array.astype(dtype)):
            continue
        if np.array_equal(uniform, array) or np.array_equal(
            float32_shortest(uniform), array
        ):
            ends = [edges[0], edges[-1]]
            low, high = float32_shortest(ends).tolist() if bits == 32 else ends
            return f"f{bits}:{low!r}:{high!r}:{len(edges) - 1}"
    return edges


def pack_counts(counts: Any) -> Any:
    """Integer ``counts`` (``[B]`` or ``[Bx][By]``) as ``{"shape", "bits"}``.

    Args:
        counts: A histogram's counts, already integers (``_format.compact``).

    Returns:
        The packed form, or ``counts`` unchanged if they are not a non-empty 1D or
        2D array of non-negative integers, or packed would not be shorter (a few
        counts).

    """
    try:
        array = np.asarray(counts)
    except ValueError:  # ragged
        return counts
    if array.dtype.kind not in "iu" or not 1 <= array.ndim <= 2 or not array.size:
        return counts
    if array.min() < 0 or array.size > MAX_BINS:
        return counts
    text = base64.b64encode(encode_counts(array)).decode("ascii")
    packed = {_SHAPE: list(array.shape), _BITS: text}
    if len(orjson.dumps(packed)) >= len(orjson.dumps(array.tolist())):
        return counts
    return packed


def pack_together(arrays: list[np.ndarray]) -> dict[str, Any] | None:
    """A histogram's integer counts and its per-layer ones, packed as one.

    ``{"shape": shape of one, "bits": TEXT, "layers": L}``, ``TEXT`` of the
    ``[1 + L, *shape]`` counts, the whole model's first, then its per-layer
    histograms' in their order: one zlib stream instead of ``1 + L``.

    Args:
        arrays: The whole histogram's counts, then each layer's.

    Returns:
        The packed form, or ``None`` unless there are layers and all counts are
        non-negative integers of one 1D or 2D shape.

    """
    shape = arrays[0].shape
    if len(arrays) < 2 or any(array.shape != shape for array in arrays):
        return None
    stacked = np.stack(arrays)
    if stacked.dtype.kind not in "iu" or not 1 <= len(shape) <= 2:
        return None
    if not stacked.size or stacked.size > MAX_BINS or stacked.min() < 0:
        return None
    text = base64.b64encode(encode_counts(stacked)).decode("ascii")
    return {_SHAPE: list(shape), _BITS: text, _LAYERS: len(arrays) - 1}


def unpack(tree: dict[str, Any]) -> None:
    """Unpack, in place, the packed counts and edges anywhere in ``tree``.

    Args:
        tree: A decoded record's ``"values"`` (nested dicts).

    Raises:
        ValueError: If a packed value is malformed.

    """
    for key, item in tree.items():
        if type(item) is dict:
            if key == COUNTS and _LAYERS in item:
                _unpack_together(tree, item)
            elif key == COUNTS:
                tree[key] = _unpack_counts(item)
            elif key in _EDGE_KEYS:
                tree[key] = _unpack_edges(item)
            else:
                unpack(item)
        elif type(item) is str and key in _EDGE_KEYS and item[:4] in _EDGE_TEXTS:
            tree[key] = _unpack_edges(_edge_fields(item))


def _unpack_together(hist: dict[str, Any], packed: dict[str, Any]) -> None:
    """Unpack counts of :func:`pack_together` into ``hist`` and its per-layer dicts."""
    layers, per_layer = packed.get(_LAYERS), hist.get(PER_LAYER)
    if (
        type(layers) is not int
        or not isinstance(per_layer, dict)
        or len(per_layer) != layers
        or not all(type(h) is dict and COUNTS not in h for h in per_layer.values())
    ):
        raise ValueError(
            "counts packed with 'layers' need as many per-layer histograms without "
            "counts of their own"
        )
    counts = _counts_array(packed, 1 + layers)
    hist[COUNTS] = counts[0].tolist()
    for layer, layer_counts in zip(per_layer.values(), counts[1:], strict=True):
        layer[COUNTS] = layer_counts.tolist()


def _unpack_counts(packed: dict[str, Any]) -> list[Any]:
    return _counts_array(packed)[0].tolist()


def _counts_array(packed: dict[str, Any], copies: int = 1) -> np.ndarray:
    """``[copies, *shape]`` counts of a packed form (``"bits"`` or ``"packed"``)."""
    shape = packed.get(_SHAPE)
    key = _BITS if _BITS in packed else _PLANES
    text = packed.get(key)
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(n) is int and 0 < n <= MAX_BINS for n in shape)
        or copies * math.prod(shape) > MAX_BINS
        or not isinstance(text, str)
    ):
        raise ValueError(
            f"packed counts need a 'shape' of one or two positive integers (at most "
            f"{MAX_BINS} counts in all) and a 'bits' (or 'packed') string, got "
            f"{sorted(packed)}"
        )
    decode = decode_counts if key == _BITS else decode_planes
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as err:
        raise ValueError(f"packed counts do not decode: {err}") from None
    return decode(data, copies * math.prod(shape)).reshape(copies, *shape)


def _edge_fields(text: str) -> dict[str, Any]:
    """The fields of ``"f<bits>:<from>:<to>:<bins>"`` (format 3.0) as in format 2.0."""
    parts = text.split(":")
    try:
        if len(parts) != 4 or not (parts[3].isascii() and parts[3].isdigit()):
            raise ValueError
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(
            f"packed edges must read 'f32:<from>:<to>:<bins>' or 'f64:...', got "
            f"{text[:60]!r}"
        ) from None
    return {
        _FROM: low,
        _TO: high,
        _BINS: int(parts[3]),
        _FLOAT: _EDGE_TEXTS[parts[0] + ":"],
    }


def _unpack_edges(packed: dict[str, Any]) -> list[float]:
    low, high = packed.get(_FROM), packed.get(_TO)
    bins, bits = packed.get(_BINS), packed.get(_FLOAT)
    if (
        not all(type(end) in (int, float) and math.isfinite(end) for end in (low, high))
        or type(bins) is not int
        or not 0 < bins <= MAX_BINS
        or type(bits) is not int
        or bits not in _FLOATS
    ):
        raise ValueError(
            "packed edges need finite 'from' and 'to', 'bins' a positive integer "
            f"(at most {MAX_BINS}) and 'float' 32 or 64, got {sorted(packed)}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        edges = uniform_edges(low, high, bins, bits)
    if not np.isfinite(edges).all():
        raise ValueError(f"packed edges from {low} to {high} overflow float{bits}")
    return edges.tolist()
