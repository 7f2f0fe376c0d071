"""Smoothing and downsampling of series, so long runs stay readable and responsive."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cockpit.instruments._data import Series
from cockpit.instruments._view import View

__all__ = ["ema", "ema_span", "even_indices", "extreme_indices", "layer_matrix"]


def ema_span(count: int) -> int:
    """The span of the moving average for a series of ``count`` points.

    About 5 % of the points, at most 1000: a trend for long runs that does not lag
    far behind the few points of a short or sparse one.
    """
    return int(min(1000, max(1, count // 20)))


def ema(values: np.ndarray, span: int | None = None) -> np.ndarray:
    """Debiased exponential moving average (pandas ``ewm(adjust=True)``).

    Args:
        values: ``[T]`` finite values in step order.
        span: Span of the average; :func:`ema_span` of ``T`` if ``None``.

    Returns:
        ``[T]`` smoothed values.

    """
    if len(values) == 0:
        return np.asarray(values, dtype=float)
    span = span or ema_span(len(values))
    return pd.Series(values, dtype=float).ewm(span=span, adjust=True).mean().to_numpy()


def extreme_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most about ``max_points`` points that keep every extreme.

    The series is cut into ``max_points // 2`` buckets of consecutive points; each
    bucket keeps its minimum and its maximum (and the first and last points are
    kept), so a one-step spike survives any amount of downsampling.

    Args:
        values: ``[T]`` finite values.
        max_points: Points to keep at most (plus the two ends).

    Returns:
        Ascending indices into ``values``.

    """
    count = len(values)
    if count <= max_points:
        return np.arange(count)
    size = math.ceil(count / max(1, max_points // 2))
    buckets = math.ceil(count / size)
    padded = np.full(buckets * size, np.nan)
    padded[:count] = values
    grid = padded.reshape(buckets, size)
    start = np.arange(buckets) * size
    low = start + np.nanargmin(grid, axis=1)
    high = start + np.nanargmax(grid, axis=1)
    return np.unique(np.concatenate([low, high, [0, count - 1]]))


def even_indices(count: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spaced indices of ``count`` points, ends kept."""
    if count <= max_points:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_points).round().astype(int))


def layer_matrix(
    rows: Sequence[Series], view: View, columns: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer series as a ``[layers, buckets]`` matrix of step buckets.

    Each bucket holds the maximum of its steps, so a spike stays visible however
    long the run.

    Returns:
        ``(bucket_steps, matrix)``; NaN where a layer has no value in a bucket.

    """
    shown = [s.between(*view.steps).finite() for s in rows]
    steps = np.concatenate([s.steps for s in shown] or [np.empty(0, np.int64)])
    if len(steps) == 0:
        return np.empty(0), np.empty((len(rows), 0))
    low, high = int(steps.min()), int(steps.max())
    count = min(columns, high - low + 1)
    edges = np.linspace(low, high + 1, count + 1)
    matrix = np.full((len(rows), count), -np.inf)
    for i, s in enumerate(shown):
        bucket = np.clip(np.searchsorted(edges, s.steps, "right") - 1, 0, count - 1)
        np.maximum.at(matrix[i], bucket, s.values)
    matrix[np.isneginf(matrix)] = np.nan
    return np.floor(edges[:-1]).astype(int), matrix
