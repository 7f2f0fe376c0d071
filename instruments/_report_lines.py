"""The report's panels of quantities over steps: the matplotlib twins of ``_lines.py``.

Each function draws one instrument into its cell of the report, reading what to draw
(rows, labels, reference lines, scales) from the instrument's class attributes, so a
panel declared once shows the same in the dashboard and the report.
"""

from __future__ import annotations

import numpy as np
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import fmt
from cockpit.instruments._lines import LinesInstrument
from cockpit.instruments._report_axes import (
    COLORS,
    STYLES,
    heatmap,
    legend,
    newest,
    note,
    plot_series,
    reference,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._series import layer_matrix
from cockpit.instruments._view import View
from cockpit.instruments.hess_max_ev import HessMaxEvGauge, _at
from cockpit.instruments.loss import LossGauge, loss_band, user_metrics
from cockpit.instruments.overhead import OverheadGauge
from matplotlib.axes import Axes
from matplotlib.figure import SubFigure

__all__ = [
    "draw_hess_max_ev",
    "draw_layer_map",
    "draw_lines",
    "draw_loss",
    "draw_lr",
    "draw_overhead",
]


def _rows(axes: list[Axes], inst: LinesInstrument, run: RunData, view: View) -> Series:
    """Draw :attr:`LinesInstrument.rows` into ``axes``; the first quantity's series."""
    first = Series(np.empty(0, np.int64), np.empty(0))
    colors = iter(COLORS)
    for ax, quantities in zip(axes, inst.rows, strict=True):
        for style, quantity in zip(STYLES, quantities, strict=False):
            shown = plot_series(
                ax,
                inst.series_of(run, quantity, view),
                view,
                label=inst.label(quantity),
                color=next(colors),
                style=style,
                smooth=inst.smooth,
            )
            if quantity == inst.rows[0][0]:
                first = shown
        if len(quantities) > 1:
            legend(ax)
        else:
            ax.set_ylabel(inst.label(quantities[0]), fontsize=8)
        if inst.reference is not None:
            reference(ax, *inst.reference)
        set_log_y(ax, inst.log_y_for(view))
    return first


def _lines(
    cell: SubFigure, inst: LinesInstrument, run: RunData, view: View
) -> tuple[list[Axes], Series]:
    axes = list(cell.subplots(len(inst.rows), 1, sharex=True, squeeze=False)[:, 0])
    first = _rows(axes, inst, run, view)
    step_axis(axes[-1], view)
    return axes, first


def draw_lines(
    cell: SubFigure, inst: LinesInstrument, run: RunData, view: View
) -> None:
    """Quantities over steps, one axes per row of ``inst.rows``."""
    axes, first = _lines(cell, inst, run, view)
    subtitle(axes[0], newest(first, inst.unit))


def draw_overhead(
    cell: SubFigure, inst: OverheadGauge, run: RunData, view: View
) -> None:
    """Tracker and step time in ms, and the tracker's median share of the step."""
    axes, first = _lines(cell, inst, run, view)
    axes[0].set_ylabel("ms per step", fontsize=8)
    subtitle(axes[0], newest(first, inst.unit) + _tracker_share(run, view))


def _tracker_share(run: RunData, view: View) -> str:
    """The median share of the step that the tracker took, as in the dashboard."""
    tracker = run.series("tracker_time").between(*view.steps)
    step = run.series("step_time").between(*view.steps)
    _, at_tracker, at_step = np.intersect1d(
        tracker.steps, step.steps, return_indices=True
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = tracker.values[at_tracker] / step.values[at_step]
    ratios = ratios[np.isfinite(ratios)]
    return (
        f"; tracker share (median) {fmt(100 * np.median(ratios))} %"
        if len(ratios)
        else ""
    )


def draw_layer_map(
    cell: SubFigure, inst: LinesInstrument, run: RunData, view: View
) -> None:
    """The whole-model lines above a layer x step heat map (each bucket's maximum)."""
    top, bottom = cell.subplots(2, 1, sharex=True, height_ratios=[1.2, 1])
    subtitle(top, newest(_rows([top], inst, run, view)))
    quantity = inst.rows[0][0]
    layers = run.layers(quantity)
    step_axis(bottom, view)
    if not layers:
        note(bottom, f"no per-layer {quantity} logged")
        return
    steps, matrix = layer_matrix([run.series(quantity, name) for name in layers], view)
    # Buckets without a tracked step (a sparse schedule) would be blank stripes.
    tracked = np.isfinite(matrix).any(axis=0)
    steps, matrix = steps[tracked], matrix[:, tracked]
    finite = matrix[np.isfinite(matrix)]
    log = inst.log_y_for(view) and bool(np.all(finite > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(matrix) if log else matrix
    heatmap(cell, bottom, steps, layers, z, "log10" if log else inst.label(quantity))


def draw_lr(cell: SubFigure, inst: LinesInstrument, run: RunData, view: View) -> None:
    """The learning rate, one exact line per parameter group if there are several."""
    ax = cell.subplots()
    groups = run.layers("lr")
    parts = [(g, run.series("lr", g)) for g in groups] if len(groups) > 1 else []
    for color, style, (group, series) in zip(
        COLORS, STYLES, parts or [("", run.series("lr"))], strict=False
    ):
        plot_series(
            ax,
            series,
            view,
            label=group or None,
            color=color,
            style=style,
            smooth=False,
        )
    legend(ax)
    ax.set_ylabel("learning rate", fontsize=8)
    set_log_y(ax, inst.log_y_for(view))
    step_axis(ax, view)
    subtitle(ax, newest(run.series("lr").between(*view.steps).finite()))


def _band(ax: Axes, run: RunData, view: View) -> None:
    """The loss band of the dashboard (:func:`loss_band`) as a filled area."""
    band = loss_band(run, view)
    if band is None:
        return
    ax.fill_between(
        *band,
        color=COLORS[0],
        alpha=0.12,
        lw=0,
        label="per-sample spread",
    )


def draw_loss(cell: SubFigure, inst: LossGauge, run: RunData, view: View) -> None:
    """The loss with its per-sample band; the user's metrics as logged."""
    metrics = user_metrics(run)
    others = [m for m in metrics if "loss" not in m]
    axes = list(cell.subplots(2 if others else 1, 1, sharex=True, squeeze=False)[:, 0])
    _band(axes[0], run, view)
    shown = plot_series(axes[0], run.series("loss"), view, label="loss")
    for color, style, name in zip(
        COLORS[1:] * 4, STYLES[1:] * 4, metrics, strict=False
    ):
        ax = axes[0] if "loss" in name else axes[1]
        plot_series(
            ax,
            run.series(name),
            view,
            label=name,
            color=color,
            style=style,
            smooth=False,  # sparse, and already averaged over a data set
            markers=True,
        )
    axes[0].set_ylabel("loss", fontsize=8)
    for ax in axes:
        set_log_y(ax, inst.log_y_for(view))
        legend(ax)
    if others:
        axes[1].set_ylabel("your metrics", fontsize=8)
    step_axis(axes[-1], view)
    subtitle(axes[0], newest(shown))


def draw_hess_max_ev(
    cell: SubFigure, inst: HessMaxEvGauge, run: RunData, view: View
) -> None:
    """The top eigenvalue against ``2 / lr``; crosses mark unconverged estimates."""
    ax = cell.subplots()
    shown = plot_series(ax, run.series("hess_max_ev"), view, label="top eigenvalue")
    lr = run.series("lr").between(*view.steps).finite()
    if len(shown) and len(lr) and np.all(lr.values > 0):
        limit = Series(lr.steps, 2.0 / lr.values)
        plot_series(
            ax, limit, view, label="2 / lr", color=COLORS[1], style="--", smooth=False
        )
    converged = _at(run.series("hess_max_ev.converged"), shown.steps)
    bad = converged == 0
    if bad.any():
        ax.plot(
            shown.steps[bad],
            shown.values[bad],
            ls="none",
            marker="x",
            ms=6,
            color="#d00000",
            label="not converged",
        )
    legend(ax)
    ax.set_ylabel("top eigenvalue", fontsize=8)
    set_log_y(ax, inst.log_y_for(view))
    step_axis(ax, view)
    subtitle(ax, newest(shown))
    if len(shown) == 0:
        note(ax, "no finite hess_max_ev in this step range")
