"""Matplotlib drawing shared by the report's panels: the dashboard's conventions.

Steps on the x-axis, raw values as faint points and an exponential moving average as
a line, the newest value above the plot, dotted reference lines, heat maps with a
color bar. Nothing here touches pyplot, so no display or global state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cockpit.instruments._bulk import bulk_limits, padded
from cockpit.instruments._data import Series
from cockpit.instruments._figures import fmt
from cockpit.instruments._series import ema, even_indices, extreme_indices
from cockpit.instruments._view import View

if (
    TYPE_CHECKING
):  # the instruments import this module; the dashboard needs no matplotlib
    from matplotlib.axes import Axes
    from matplotlib.figure import SubFigure

__all__ = [
    "COLORS",
    "STYLES",
    "follow_bulk",
    "heatmap",
    "legend",
    "newest_text",
    "note",
    "plot_series",
    "reference",
    "set_log_y",
    "step_axis",
    "subtitle",
]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
"""The dashboard's palette; here one color per quantity of a panel."""
STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
"""Line styles telling apart the quantities (or directions) of a panel."""
_GRAY = "0.35"
AVERAGE = "moving average"
"""``gid`` of a moving average's line: it follows the values, it sets no limits."""


def plot_series(
    ax: Axes,
    series: Series,
    view: View,
    *,
    label: str | None = None,
    color: str = COLORS[0],
    style: str | tuple = "-",
    smooth: bool = True,
    markers: bool = False,
) -> Series:
    """Draw one series as faint raw points and its moving average.

    Args:
        ax: The axes.
        series: The values over steps.
        view: Gives the step range and the points budget.
        label: Legend label of the line.
        color: Color of points and line.
        style: Line style of the moving average.
        smooth: ``False`` draws the values as a plain line (exact or sparse values).
        markers: With ``smooth=False``, mark each value too.

    Returns:
        The finite part of ``series`` inside the step range.

    """
    shown = series.between(*view.steps).finite()
    if len(shown) == 0:
        return shown
    keep = extreme_indices(shown.values, view.max_points)
    steps, values = shown.steps[keep], shown.values[keep]
    if not smooth:
        marker = "o" if markers else None
        ax.plot(
            steps,
            values,
            ls=style,
            marker=marker,
            ms=3,
            lw=1.4,
            color=color,
            label=label,
        )
        return shown
    ax.plot(steps, values, ls="none", marker=".", ms=3, color=color, alpha=0.3)
    keep = even_indices(len(shown), view.max_points)
    average = ema(shown.values)[keep]
    ax.plot(
        shown.steps[keep],
        average,
        ls=style,
        lw=1.6,
        color=color,
        label=label,
        gid=AVERAGE,
    )
    return shown


def legend(ax: Axes) -> None:
    """A small legend of the labelled artists, if there are any."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def newest_text(shown: Series, unit: str = "", label: str = "") -> str:
    """``"newest 0.1234 @ 58"`` for the last point of ``shown``, or ``""``."""
    if len(shown) == 0:
        return ""
    prefix = f"{label} " if label else ""
    return (
        f"{prefix}newest {fmt(float(shown.values[-1]))}{unit} @ {int(shown.steps[-1])}"
    )


def subtitle(ax: Axes, text: str) -> None:
    """A small gray line above ``ax`` (the newest value, what the plot shows)."""
    if text:
        ax.set_title(text, loc="left", fontsize=8, color=_GRAY)


def reference(ax: Axes, y: float, text: str) -> None:
    """A dotted horizontal line at ``y``, labelled at the right end."""
    ax.axhline(y, ls=":", lw=1, color=_GRAY)
    ax.annotate(
        text,
        xy=(1, y),
        xycoords=("axes fraction", "data"),
        xytext=(-2, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=7,
        color=_GRAY,
    )


def set_log_y(ax: Axes, log: bool) -> None:
    """A log y-axis if ``log`` and the drawn lines' positive values span a decade.

    Over a narrower range a log axis looks like a linear one, but labels every minor
    tick (``9.95 x 10^-1``); the linear axis reads better on paper. Then the limits
    follow the bulk of the values (:func:`follow_bulk`).
    """
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines]
    joined = np.concatenate(values) if values else np.empty(0)
    positive = joined[np.isfinite(joined) & (joined > 0)]
    if log and len(positive) and positive.max() >= 10 * positive.min():
        ax.set_yscale("log")
    follow_bulk(ax)


def follow_bulk(ax: Axes) -> None:
    """Fit the y-axis to the bulk of the drawn values; mark far outliers at its edge.

    Call it once the lines, points and reference lines are drawn and the scale is
    set. Every line but the moving averages (which an outlier drags along) counts,
    and reference lines stay inside the range
    (:func:`cockpit.instruments._bulk.bulk_limits`); each point outside is drawn as
    a triangle at the edge it lies beyond, in its color. Without far outliers the
    limits stay matplotlib's.
    """
    log = ax.get_yscale() == "log"
    lines = [line for line in ax.lines if line.get_gid() != AVERAGE]
    values = [np.asarray(line.get_ydata(), dtype=float) for line in lines]
    if not values:
        return
    limits = bulk_limits(np.concatenate(values), log)
    if limits is None:
        return
    # Reference lines span the axes: x in axes coordinates, y in data.
    references = [
        float(y[0])
        for line, y in zip(lines, values, strict=True)
        if line.get_transform() is not line.axes.transData and len(y)
    ]
    low = min([limits[0], *references])
    high = max([limits[1], *references])
    bottom, top = padded(low, high, log)
    edges = (10**bottom, 10**top) if log else (bottom, top)
    ax.set_ylim(*edges)
    for line, y in zip(lines, values, strict=True):
        if line.get_marker() in ("None", None, "") or line.get_linestyle() != "None":
            continue
        x = np.asarray(line.get_xdata(), dtype=float)
        for beyond, edge, marker in (
            (y < low, edges[0], "v"),
            (y > high, edges[1], "^"),
        ):
            if beyond.any():
                ax.plot(
                    x[beyond],
                    np.full(int(beyond.sum()), edge),
                    ls="none",
                    marker=marker,
                    ms=5,
                    color=line.get_color(),
                    clip_on=False,
                )


def step_axis(ax: Axes, view: View, label: bool = True) -> None:
    """Steps on the x-axis, logarithmic if the view asks for it."""
    if view.x_log:
        ax.set_xscale("symlog", linthresh=1)
    if label:
        ax.set_xlabel("step")


def note(ax: Axes, text: str) -> None:
    """Gray text in the middle of ``ax``: a part of the panel without data."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=8,
        color=_GRAY,
        wrap=True,
    )


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around ascending ``centers``: halfway between neighbours."""
    centers = np.asarray(centers, dtype=float)
    if len(centers) == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    middle = 0.5 * (centers[:-1] + centers[1:])
    return np.concatenate(
        [[2 * centers[0] - middle[0]], middle, [2 * centers[-1] - middle[-1]]]
    )


def heatmap(
    cell: SubFigure,
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray | Sequence[str],
    z: np.ndarray,
    label: str,
    cax: Axes | None = None,
) -> None:
    """``z[len(y), len(x)]`` as colored cells, with a color bar named ``label``.

    Args:
        cell: The panel's subfigure, which holds the color bar.
        ax: The axes.
        x: ``[X]`` column centers (steps).
        y: ``[Y + 1]`` row edges, or ``Y`` category names (layers).
        z: Values; NaN cells stay blank.
        label: Title of the color bar.
        cax: Axes to draw a horizontal color bar into; default a vertical one
            beside ``ax``.

    """
    masked = np.ma.masked_invalid(np.asarray(z, dtype=float))
    if masked.count() == 0:
        note(ax, "no finite values to show")
        return
    names = [str(v) for v in y] if len(y) and isinstance(y[0], str) else None
    y_edges = np.arange(len(names) + 1) - 0.5 if names else np.asarray(y, float)
    mesh = ax.pcolormesh(_edges(x), y_edges, masked, cmap="viridis", shading="flat")
    if names:
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.invert_yaxis()
    if cax is None:
        colorbar = cell.colorbar(mesh, ax=ax, pad=0.01, fraction=0.05)
    else:
        colorbar = cell.colorbar(mesh, cax=cax, orientation="horizontal")
    colorbar.set_label(label, fontsize=7)
    colorbar.ax.tick_params(labelsize=7)
