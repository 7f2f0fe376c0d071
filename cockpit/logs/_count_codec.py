"""Histogram counts as bit lengths and mantissas: format 3.0's packing of counts.

A count ``c >= 0`` is its bit length ``L = c.bit_length()`` (0 for 0, 1 for 1, 2 for
2 and 3, ...) and, for ``L >= 2``, its ``L - 1`` bits below the leading one (the
mantissa ``c - 2**(L - 1)``). The bytes of ``[N]`` counts (row-major) are::

    zlib(L[0], ..., L[N - 1] as uint8)  ||  the mantissas' bits, MSB first, packed

the mantissa of count 0 first, the last byte padded with zero bits; zlib at its
default level (level 9 takes several times as long on the writer thread for a few
bytes less). The bit lengths of
neighbouring cells are alike and few (the histogram's shape), so zlib takes them to
little; the mantissas are the counts' noise, kept as they are, never more bits than
the counts need. Against format 2.0's byte planes, varints and sparse storage:
``benchmarks/log_size.py --codecs`` (the README's "The log" has its figures).

Decoding is numpy throughout (no Python loop over counts), and bounded: zlib inflates
at most ``N`` bytes, and a text whose bit lengths and mantissa bytes disagree, or with
bytes left over, is refused (``ValueError``).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["decode_counts", "decode_planes", "encode_counts"]

_MAX_LENGTH = 63  # bits of the largest int64 count
_PLANES = 8  # bytes of a count in format 2.0
_WORD_FIELD = 57  # widest mantissa :func:`_fields` reads from one 64-bit word
_WORD_BYTES = np.arange(8)
_FEW = 128  # counts :func:`_few` decodes in Python


def encode_counts(counts: np.ndarray) -> bytes:
    """The bytes of non-negative integer ``counts`` (any shape, read row-major).

    Args:
        counts: Integers in ``[0, 2**63)``.

    Returns:
        ``zlib(bit lengths) || mantissa bits`` (module docstring).

    """
    values = np.ascontiguousarray(counts, dtype=np.int64).reshape(-1)
    lengths = _bit_lengths(values)
    widths = np.maximum(lengths - 1, 0)
    starts = np.cumsum(widths) - widths
    mantissas = values - np.where(lengths > 0, np.left_shift(1, widths), 0)
    if widths.max(initial=0) <= _WORD_FIELD:
        packed = _packed_fields(mantissas, starts, widths)
    else:
        owner = np.repeat(np.arange(values.size), widths)
        # bit j (MSB first) of count i's mantissa is bit starts[i] + j of the stream
        shift = widths[owner] - 1 - (np.arange(owner.size) - starts[owner])
        bits = (values[owner] >> shift) & 1
        packed = np.packbits(bits.astype(np.uint8)).tobytes()
    return zlib.compress(lengths.astype(np.uint8).tobytes()) + packed


def _packed_fields(fields: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> bytes:
    """``fields[i]`` as ``widths[i]`` bits at bit ``starts[i]`` (MSB first), packed.

    Each field goes into the 8 bytes from its first one on, as a big-endian word;
    the fields' bits are disjoint, so adding the bytes of all words (``bincount``,
    exact: each sum is at most 255) sets them. Needs ``widths <= 57``.
    """
    size = (int(widths.sum()) + 7) // 8
    shift = (64 - (starts & 7) - widths).astype(np.uint64)
    words = (fields.astype(np.uint64) << shift).astype(">u8")
    first = starts >> 3
    where = (first[:, None] + np.arange(8)).reshape(-1)
    sums = np.bincount(where, weights=words.view(np.uint8), minlength=size + 8)
    return sums[:size].astype(np.uint8).tobytes()


def decode_counts(data: bytes, size: int) -> np.ndarray:
    """``[size]`` int64 counts from the bytes of :func:`encode_counts`.

    Raises:
        ValueError: If ``data`` is not the bytes of ``size`` counts.

    """
    inflate = zlib.decompressobj()
    try:
        lengths = inflate.decompress(data, size + 1)
    except zlib.error as err:
        raise ValueError(f"packed counts do not decode: {err}") from None
    if len(lengths) != size or not inflate.eof:
        raise ValueError(
            f"packed counts need {size} bit lengths, got "
            f"{len(lengths)}{'' if inflate.eof else ' or more'}"
        )
    if max(lengths, default=0) > _MAX_LENGTH:
        raise ValueError(f"packed counts longer than {_MAX_LENGTH} bits")
    mantissas = inflate.unused_data
    if size <= _FEW:
        return _few(lengths, mantissas)
    length = np.frombuffer(lengths, np.uint8).astype(np.int64)
    widths = np.maximum(length - 1, 0)
    total = _checked_bits(int(widths.sum()), mantissas)
    starts = np.cumsum(widths) - widths
    counts = np.where(length > 0, np.left_shift(1, widths), 0)
    if widths.max(initial=0) <= _WORD_FIELD:
        return counts + _fields(mantissas, starts, widths)
    bits = np.unpackbits(np.frombuffer(mantissas, np.uint8))[:total].astype(np.int64)
    owner = np.repeat(np.arange(size), widths)
    bits <<= widths[owner] - 1 - (np.arange(total) - starts[owner])
    wide = widths > 0  # reduceat needs segments that are not empty
    if total:
        counts[wide] += np.add.reduceat(bits, starts[wide])
    return counts


def _checked_bits(total: int, mantissas: bytes) -> int:
    """``total``, the mantissas' bits, if ``mantissas`` has exactly their bytes."""
    if len(mantissas) != (total + 7) // 8:
        raise ValueError(
            f"packed counts need {(total + 7) // 8} mantissa bytes, got "
            f"{len(mantissas)}"
        )
    return total


def _few(lengths: bytes, mantissas: bytes) -> np.ndarray:
    """:func:`decode_counts` for a few counts, in Python integers.

    Below :data:`_FEW` counts, a loop costs less than numpy's per-call overhead
    (a 64-bin histogram: a fraction of the time of a dozen array operations).
    """
    _checked_bits(sum(n - 1 for n in lengths if n > 1), mantissas)
    rest = int.from_bytes(mantissas, "big")
    end = 8 * len(mantissas)  # the bit after the next field, from the right
    counts = []
    for length in lengths:
        if length < 2:
            counts.append(length)
            continue
        end -= length - 1
        counts.append((1 << (length - 1)) | (rest >> end) & ((1 << (length - 1)) - 1))
    return np.array(counts, np.int64)


def _fields(data: bytes, starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The ``widths[i]``-bit numbers at bit ``starts[i]`` of ``data`` (MSB first).

    Each is read from the 8 bytes from its first one on, as a big-endian word: one
    gather and a few operations on ``[N]`` arrays, where a bit at a time would take
    ``[bits]`` ones (a 3c3d step: 13,312 counts, about 160,000 bits). Needs
    ``widths <= 57``, so that a field ends within its word.
    """
    padded = np.frombuffer(data + bytes(8), np.uint8)
    words = padded[(starts >> 3)[:, None] + _WORD_BYTES].view(">u8").reshape(-1)
    shift = (64 - (starts & 7) - widths).astype(np.uint64)
    masks = ((1 << widths) - 1).astype(np.uint64)
    return ((words >> shift) & masks).astype(np.int64)


def _bit_lengths(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each value (exact: no floating-point logarithm)."""
    lengths = np.zeros(values.size, np.int64)
    rest = values.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        high = rest >= (1 << shift)
        lengths[high] += shift
        rest[high] >>= shift
    return lengths + (rest > 0)


def decode_planes(data: bytes, size: int) -> np.ndarray:
    """``[size]`` int64 counts packed as in format 2.0: zlib of ``uint64`` byte planes.

    Raises:
        ValueError: If ``data`` is not the bytes of ``size`` counts in the int64 range.

    """
    inflate = zlib.decompressobj()
    try:
        planes = inflate.decompress(data, size * _PLANES + 1)
    except zlib.error as err:
        raise ValueError(f"packed counts do not decode: {err}") from None
    if len(planes) != size * _PLANES:
        raise ValueError(
            f"packed counts need {size * _PLANES} bytes, got "
            f"{len(planes)}{' or more' if len(planes) > size * _PLANES else ''}"
        )
    by_plane = np.frombuffer(planes, np.uint8).reshape(_PLANES, size)
    counts = np.ascontiguousarray(by_plane.T).view("<u8").reshape(size)
    if counts.max() >= 2**63:
        raise ValueError("packed counts beyond the int64 range")
    return counts.astype(np.int64)
