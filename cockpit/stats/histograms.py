"""Weighted histograms that run on any device without a host synchronization.

``torch.histc`` has no weights and raises on non-finite ranges; these functions take a
range as tensors, give non-finite values zero weight, and never look at a value on the
host, so they run on the training thread without a synchronization. (Counting uses
``index_add_`` on a fixed-size buffer: ``torch.bincount`` must read the largest index
on the host to size its output, a synchronization on CUDA.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def safe_range(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """Make ``[low, high]`` a usable, finite, non-empty range.

    Non-finite ends become 0 (their histogram is flagged non-finite by the caller);
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

    The last bin is closed on the right; values outside the range or non-finite get
    index 0 and must be given weight 0 by the caller.

    Args:
        values: ``[K]``.
        low: ``[]``.
        high: ``[]``.
        bins: Number of bins.

    Returns:
        ``[K]`` int64 indices in ``[0, bins)``.

    """
    position = (values - low) / (high - low) * bins
    position = torch.nan_to_num(position, nan=0.0, posinf=0.0, neginf=0.0)
    return position.clamp(0, bins - 1).long()


def in_range(values: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``[K]`` bool: finite and inside ``[low, high]``."""
    return torch.isfinite(values) & (values >= low) & (values <= high)


def _count(index: Tensor, weights: Tensor, size: int) -> Tensor:
    """``[size]`` sums of ``weights`` per index."""
    counts = torch.zeros(size, dtype=weights.dtype, device=weights.device)
    return counts.index_add_(0, index, weights)


def histogram_1d(
    values: Tensor, weights: Tensor, low: Tensor, high: Tensor, bins: int
) -> Tensor:
    """Weighted counts of ``values`` in ``bins`` equal bins on ``[low, high]``.

    Args:
        values: ``[K]``.
        weights: ``[K]``, how many elements each value stands for.
        low: ``[]``, left edge.
        high: ``[]``, right edge (``> low``).
        bins: Number of bins.

    Returns:
        ``[bins]`` counts (dtype of ``weights``).

    """
    weights = weights * in_range(values, low, high)
    index = bin_index(values, low, high, bins)
    return _count(index, weights, bins)


def histogram_2d(
    x: Tensor,
    y: Tensor,
    weights: Tensor,
    x_range: tuple[Tensor, Tensor],
    y_range: tuple[Tensor, Tensor],
    bins: tuple[int, int],
) -> Tensor:
    """Weighted 2D counts of the pairs ``(x_k, y_k)``.

    Args:
        x: ``[K]``.
        y: ``[K]``.
        weights: ``[K]``.
        x_range: ``(low, high)`` for x.
        y_range: ``(low, high)`` for y.
        bins: ``(bins_x, bins_y)``.

    Returns:
        ``[bins_x, bins_y]`` counts; row i is the i-th x bin.

    """
    bx, by = bins
    weights = weights * in_range(x, *x_range) * in_range(y, *y_range)
    index = bin_index(x, *x_range, bx) * by + bin_index(y, *y_range, by)
    return _count(index, weights, bx * by).view(bx, by)
