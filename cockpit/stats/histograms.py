"""Weighted histograms that run on any device without a host synchronization.

``torch.histc`` has no weights, takes its range as host numbers and raises on
non-finite ranges. These functions take the range as tensors and never look at a value
on the host, so they run on the training thread without a synchronization. Counting
uses ``index_add_`` on a fixed-size buffer (``torch.bincount`` must read the largest
index on the host to size its output, a synchronization on CUDA).

The range is meant to be the exact minimum and maximum of the values, so every finite
value falls inside it. If the range itself is not finite (some value was NaN or
infinite), the counts are NaN: the histogram is then logged as non-finite rather than
as counts of a made-up range.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor


def safe_range(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """Make ``[low, high]`` a usable, finite, non-empty range.

    Non-finite ends become 0 (see the module docstring for what the counts do then);
    an empty range ``low == high`` widens by 0.5 on each side.

    Args:
        low: ``[]``.
        high: ``[]``.

    Returns:
        ``(low, high)``, both ``[]``, with ``low < high``.
    """
    low = torch.nan_to_num(low, nan=0.0, posinf=0.0, neginf=0.0)
    high = torch.nan_to_num(high, nan=0.0, posinf=0.0, neginf=0.0)
    empty = high <= low
    return torch.where(empty, low - 0.5, low), torch.where(empty, high + 0.5, high)


def bin_index(values: Tensor, low: Tensor, high: Tensor, bins: int) -> Tensor:
    """Index of each value's bin among ``bins`` equal bins on ``[low, high]``.

    The last bin is closed on the right; values outside the range land in the first
    or last bin, NaN in the first.

    Args:
        values: ``[K]``.
        low: ``[]``.
        high: ``[]``, ``> low``.
        bins: Number of bins.

    Returns:
        ``[K]`` int32 indices in ``[0, bins)`` (int32 converts about four times
        faster than int64 on a CPU; ``index_add_`` takes either).
    """
    position = (values - low).mul_(bins / (high - low))
    return position.to(torch.int32).clamp_(0, bins - 1)


def _count(index: Tensor, groups: list[tuple], size: int, like: Tensor) -> Tensor:
    """``[size]`` counts of each index, each group's entries counting its weight.

    ``index`` holds the groups' indices one after the other; each run of groups
    with the same weight adds it per entry in one ``index_add_``, as its ``alpha``
    times a one expanded without copies (``1 * w`` is ``w`` exactly): the groups
    come sorted by weight (:func:`_by_weight`), so layers of equal size share one
    call. No tensor is built from host data: on a GPU that copy would wait for the
    device; one ones tensor serves every run.
    """
    counts = torch.zeros(size, dtype=like.dtype, device=like.device)
    one = torch.ones(1, dtype=like.dtype, device=like.device)
    sizes: list[int] = []
    weights: list[float] = []
    for group in groups:
        weight = float(group[-1])
        if weights and weights[-1] == weight:
            sizes[-1] += group[0].numel()
        else:
            sizes.append(group[0].numel())
            weights.append(weight)
    parts = index.split(sizes) if len(sizes) > 1 else (index,)
    for part, weight in zip(parts, weights, strict=True):
        counts.index_add_(0, part, one.expand(part.shape[0]), alpha=weight)
    return counts


def _by_weight(groups: list[tuple]) -> list[tuple]:
    """The groups sorted by their weight (the last entry), for :func:`_count`."""
    return sorted(groups, key=operator.itemgetter(-1))


def _flat_cat(tensors: list[Tensor]) -> Tensor:
    """``[sum K_l]``: the tensors flattened and concatenated.

    The groups' values are flat already (one per layer), so only the others are
    reshaped: a reshape per layer would be one more operation per parameter tensor.
    """
    return torch.cat([t if t.dim() == 1 else t.reshape(-1) for t in tensors])


def _nan_unless_finite(counts: Tensor, *ends: Tensor) -> Tensor:
    """``counts``, or NaN everywhere if an end is not finite (three operations)."""
    finite = torch.isfinite(torch.stack(ends)).all()
    return torch.where(finite, counts, math.nan)


def histogram_1d(
    groups: list[tuple[Tensor, float]],
    low: Tensor,
    high: Tensor,
    bins: int,
    span: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Weighted counts in ``bins`` equal bins on ``[low, high]``.

    Args:
        groups: ``(values [K_l], weight)`` pairs; each value counts ``weight`` times
            (a sample standing for ``weight`` elements of its layer).
        low: ``[]``, left edge: the exact minimum of the values.
        high: ``[]``, right edge: the exact maximum of the values.
        bins: Number of bins.
        span: ``safe_range(low, high)``, if the caller has it already (the edges
            are drawn on it too): not computed twice per step.

    Returns:
        ``[bins]`` counts; NaN if the range is not finite.
    """
    start, stop = safe_range(low, high) if span is None else span
    groups = _by_weight(groups)
    values = _flat_cat([v for v, _ in groups])
    index = bin_index(values, start, stop, bins)
    counts = _count(index, groups, bins, values)
    return _nan_unless_finite(counts, low, high)


def histogram_2d(
    groups: list[tuple[Tensor, Tensor, float]],
    x_range: tuple[Tensor, Tensor],
    y_range: tuple[Tensor, Tensor],
    bins: tuple[int, int],
) -> Tensor:
    """Weighted 2D counts of pairs ``(x_k, y_k)``.

    Args:
        groups: ``(x [K_l], y [K_l], weight)`` triples.
        x_range: ``(min, max)`` of x.
        y_range: ``(min, max)`` of y.
        bins: ``(bins_x, bins_y)``.

    Returns:
        ``[bins_x, bins_y]`` counts, row i the i-th x bin; NaN if a range is not finite.
    """
    bx, by = bins
    x_start_stop, y_start_stop = safe_range(*x_range), safe_range(*y_range)
    groups = _by_weight(groups)
    x = _flat_cat([x for x, _, _ in groups])
    y = _flat_cat([y for _, y, _ in groups])
    index = (
        bin_index(x, *x_start_stop, bx).mul_(by).add_(bin_index(y, *y_start_stop, by))
    )
    counts = _count(index, groups, bx * by, y)
    return _nan_unless_finite(counts, *x_range, *y_range).view(bx, by)
