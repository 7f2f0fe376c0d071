"""Value-axis limits that follow the bulk of the values, so one outlier cannot set them.

A history panel scaled to its extremes shows one step with alpha near -2500 and a
flat line at 0 for all the others. :func:`bulk_limits` finds the values far outside
the central range and the limits of the rest; the panels draw the rest and mark the
outliers at the axis edge (:func:`cockpit.instruments._figures.follow_bulk`,
:func:`cockpit.instruments._report_axes.follow_bulk`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_POINTS", "REACH", "TAIL", "bulk_limits", "padded"]

TAIL = 0.05
"""Quantiles ``TAIL`` and ``1 - TAIL`` bound the central range."""
REACH = 1.0
"""Values beyond the central range by more than ``REACH`` times its width are outliers."""
MIN_POINTS = 20
"""Fewer values than this are too few to call any of them an outlier."""


def bulk_limits(values: np.ndarray, log: bool = False) -> tuple[float, float] | None:
    """The smallest and largest value that is not a far outlier, if there are any.

    With ``q_lo``, ``q_hi`` the 5 % and 95 % quantiles and ``w = q_hi - q_lo``, a
    value outside ``[q_lo - w, q_hi + w]`` is a far outlier (on a log axis the same
    in decades). A falling loss or a growing distance stays whole: its extremes are
    more than 5 % of the points, or lie within a width of the central range.

    Args:
        values: ``[T]`` values of one axis (non-finite ones are ignored; on a log
            axis also those ``<= 0``, which it cannot show).
        log: Whether the axis is logarithmic.

    Returns:
        ``(low, high)`` in data units, or ``None`` if no value is a far outlier (or
        there are too few values), so the axis may span all of them.

    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if log:
        values = np.log10(values[values > 0])
    if len(values) < MIN_POINTS:
        return None
    low, high = np.quantile(values, [TAIL, 1 - TAIL])
    width = high - low
    if width <= 0:
        return None
    inside = (values >= low - REACH * width) & (values <= high + REACH * width)
    if inside.all():
        return None
    kept = values[inside]
    low, high = float(kept.min()), float(kept.max())
    return (10**low, 10**high) if log else (low, high)


def padded(
    low: float, high: float, log: bool, margin: float = 0.05
) -> tuple[float, float]:
    """``[low, high]`` widened by ``margin`` of its width on each side.

    On a log axis the width is in decades and the result is in decades
    (``log10``), as plotly's axis ranges are.
    """
    if log:
        low, high = np.log10(low), np.log10(high)
    pad = margin * (high - low)
    return float(low - pad), float(high + pad)
