"""The report's panels with their own shapes: distributions, regions, bars, maps.

The matplotlib twins of ``alpha.py``, ``gradient_tests.py``, ``grad_hist_1d.py``,
``grad_hist_2d.py``, ``kfac_block.py`` and ``ggn_top_eigen.py``; they reuse those
modules' keys and data helpers, so both renderers show the same numbers.
"""

from __future__ import annotations

import numpy as np
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData
from cockpit.instruments._presets import how_to_fill
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
from cockpit.instruments._view import View
from cockpit.instruments.alpha import _KEY, _bins
from cockpit.instruments.ggn_top_eigen import _SNRS, directions
from cockpit.instruments.grad_hist_1d import in_range, rebin
from cockpit.instruments.gradient_tests import _TESTS
from cockpit.instruments.kfac_block import _CONDITION, _TOP, _latest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import SubFigure
from matplotlib.patches import Circle, FancyArrow, Rectangle

__all__ = [
    "draw_alpha",
    "draw_ggn_top_eigen",
    "draw_grad_hist_1d",
    "draw_grad_hist_2d",
    "draw_gradient_tests",
    "draw_kfac_block",
]

_DASH = {"solid": "-", "dash": "--", "dot": ":"}


def draw_alpha(cell: SubFigure, inst: Instrument, run: RunData, view: View) -> None:
    """Densities of alpha (all steps, last 10 %) over the parabola key; its history."""
    left, right = cell.subplots(1, 2, width_ratios=[2, 3])
    series = run.series("alpha").between(*view.steps).finite()
    bins = _bins([series.values])
    top = 0.0
    recent = series.values[int(0.9 * len(series)) :]
    for part, values, style in (
        ("all steps", series.values, "-"),
        ("last 10 %", recent, ":"),
    ):
        if len(values) == 0:
            continue
        with np.errstate(invalid="ignore"):  # no value inside the bins: NaN density
            density, _ = np.histogram(values, bins=bins, density=True)
        top = max(top, float(np.nanmax(density, initial=0.0)))
        left.stairs(density, bins, ls=style, color=COLORS[0], lw=1.4, label=part)
    top = top or 1.0
    x = np.linspace(-1.3, 1.3, 53)
    left.plot(x, top * x**2, ls="--", color="0.55", lw=1, label="local quadratic")
    for position, label in _KEY:
        left.plot(position, top * position**2, "o", color="0.3", ms=4)
        left.annotate(
            label,
            (position, top * position**2),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    left.set_ylim(0, 1.9 * top)
    left.set_xlabel("alpha")
    left.set_ylabel("density", fontsize=8)
    legend(left)
    shown = plot_series(right, run.series("alpha"), view)
    reference(right, 0.0, "valley floor")
    right.set_ylabel("alpha", fontsize=8)
    step_axis(right, view)
    subtitle(right, newest(shown))


def draw_gradient_tests(
    cell: SubFigure, inst: Instrument, run: RunData, view: View
) -> None:
    """The newest test values as regions around the gradient, and their history."""
    left, right = cell.subplots(1, 2, width_ratios=[1, 2])
    latest: dict[str, tuple[float, str, str]] = {}
    first = None
    for color, (key, label, dash) in zip(COLORS, _TESTS, strict=False):
        layer = view.layer if view.layer in run.layers(key) else None
        shown = plot_series(
            right,
            run.series(key, layer),
            view,
            label=label,
            color=color,
            style=_DASH[dash],
        )
        first = first if first is not None else shown
        if len(shown):
            latest[key] = (float(shown.values[-1]), color, _DASH[dash])
    _regions(left, latest)
    reference(right, 1.0, "1: batch too small above")
    right.set_ylabel("test value", fontsize=8)
    set_log_y(right, inst.log_y_for(view))
    legend(right)
    step_axis(right, view)
    subtitle(right, newest(first, label="norm test") if first is not None else "")


def _regions(ax: Axes, latest: dict[str, tuple[float, str, str]]) -> None:
    """Norm test: disk around the gradient's tip; inner product: band along; orth.: across."""
    shapes = {
        "norm_test": lambda r: Circle((1, 0), r),
        "inner_product_test": lambda r: Rectangle((1 - r, -2), 2 * r, 4),
        "orthogonality_test": lambda r: Rectangle((-0.5, -r), 3, 2 * r),
    }
    for key, shape in shapes.items():
        if key in latest:
            r, color, dash = latest[key]
            patch = shape(r)
            patch.set(ec=color, fc=to_rgba(color, 0.08), ls=dash, lw=1.2)
            ax.add_patch(patch)
    ax.add_patch(
        FancyArrow(
            0, 0, 0.92, 0, width=0.02, head_width=0.12, head_length=0.08, color="#333"
        )
    )
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.set_xlabel("along the gradient", fontsize=8)
    ax.set_ylabel("across", fontsize=8)
    ax.set_title(
        "newest, around the batch gradient", loc="left", fontsize=8, color="0.35"
    )


def draw_grad_hist_1d(
    cell: SubFigure, inst: Instrument, run: RunData, view: View
) -> None:
    """The newest histogram of gradient elements, and all of them as a step x bin map."""
    left, right = cell.subplots(1, 2, width_ratios=[2, 3])
    hists = in_range(run.histograms("grad_hist_1d"), view)
    step_axis(right, view)
    if not hists:
        note(left, "no histogram in this step range")
        return
    latest = hists[-1]
    counts = np.nan_to_num(latest.counts, nan=0.0)
    left.stairs(
        counts / (counts.sum() or 1.0),
        latest.edges,
        color=COLORS[0],
        fill=True,
        alpha=0.6,
    )
    left.set_xlabel("gradient element", fontsize=8)
    left.set_ylabel("fraction", fontsize=8)
    if inst.log_y_for(view) and counts.any():
        left.set_yscale("log")
    subtitle(left, f"step {latest.step}")
    edges, fractions = rebin(hists)
    with np.errstate(divide="ignore"):
        z = np.where(fractions > 0, np.log10(fractions), np.nan)
    heatmap(
        cell, right, np.array([h.step for h in hists]), edges, z.T, "log10 fraction"
    )
    right.set_ylabel("gradient element", fontsize=8)


def draw_grad_hist_2d(
    cell: SubFigure, inst: Instrument, run: RunData, view: View
) -> None:
    """The newest 2D density of (parameter, gradient element) with both marginals."""
    grid = cell.add_gridspec(2, 2, width_ratios=[4, 1], height_ratios=[1, 4])
    main = cell.add_subplot(grid[1, 0])
    above = cell.add_subplot(grid[0, 0], sharex=main)
    beside = cell.add_subplot(grid[1, 1], sharey=main)
    corner = cell.add_subplot(grid[0, 1])
    corner.axis("off")
    hists = in_range(run.histograms("grad_hist_2d", view.layer), view) or in_range(
        run.histograms("grad_hist_2d"), view
    )
    if not hists:
        note(main, "no 2D histogram in this step range")
        return
    hist = hists[-1]
    counts = np.nan_to_num(hist.counts, nan=0.0)
    y_edges = (
        hist.y_edges if hist.y_edges is not None else np.arange(counts.shape[1] + 1)
    )
    log = inst.log_y_for(view)
    with np.errstate(divide="ignore"):
        z = np.where(counts > 0, np.log10(counts), np.nan) if log else counts
    heatmap(
        cell,
        main,
        0.5 * (hist.edges[:-1] + hist.edges[1:]),
        y_edges,
        z.T,
        "log10 count" if log else "count",
        cax=corner.inset_axes((0.05, 0.55, 0.9, 0.18)),
    )
    above.stairs(counts.sum(axis=1), hist.edges, fill=True, color=COLORS[0], alpha=0.6)
    beside.stairs(
        counts.sum(axis=0),
        y_edges,
        orientation="horizontal",
        fill=True,
        color=COLORS[0],
        alpha=0.6,
    )
    # The marginals' count axes: their shape matters, not their numbers.
    above.tick_params(labelbottom=False, labelleft=False, left=False)
    beside.tick_params(labelbottom=False, labelleft=False, bottom=False)
    main.set_xlabel("parameter value", fontsize=8)
    main.set_ylabel("gradient element", fontsize=8)
    where = "whole model" if view.layer is None else f"layer {view.layer}"
    subtitle(above, f"{where}, step {hist.step}")


def draw_kfac_block(
    cell: SubFigure, inst: Instrument, run: RunData, view: View
) -> None:
    """Per layer the newest top eigenvalue and condition number; the top over steps."""
    grid = cell.add_gridspec(2, 2, height_ratios=[1, 1])
    log = inst.log_y_for(view)
    for col, (quantity, title) in enumerate(
        ((_TOP, "top eigenvalue"), (_CONDITION, "condition number (x: singular)"))
    ):
        ax = cell.add_subplot(grid[0, col])
        layers, values = _latest(run, quantity, view)
        subtitle(ax, title)
        if not layers:
            note(ax, f"no per-layer {quantity} logged")
            continue
        positions = np.arange(len(layers))
        ax.bar(positions, np.nan_to_num(values, nan=0.0), color=COLORS[0], alpha=0.8)
        singular = np.isnan(values)
        ax.plot(
            positions[singular], np.ones(singular.sum()), "x", color=COLORS[1], ms=7
        )
        ax.set_xticks(positions, layers, rotation=60, ha="right", fontsize=6)
        if log and np.any(values[~singular] > 0):
            ax.set_yscale("log")
    history = cell.add_subplot(grid[1, :])
    layer = view.layer if view.layer in run.layers(_TOP) else None
    shown = plot_series(history, run.series(_TOP, layer), view)
    history.set_ylabel("top eigenvalue", fontsize=8)
    set_log_y(history, log)
    step_axis(history, view)
    subtitle(history, newest(shown, label="whole model" if layer is None else layer))


def draw_ggn_top_eigen(
    cell: SubFigure, inst: Instrument, run: RunData, view: View
) -> None:
    """The top GGN eigenvalues over steps; the newest SNRs along each direction."""
    top, bottom = cell.subplots(2, 1, height_ratios=[3, 2])
    first = None
    for color, style, k in zip(
        COLORS, STYLES, directions(run, "ggn_top_eigen"), strict=False
    ):
        shown = plot_series(
            top,
            run.series(f"ggn_top_eigen.{k}"),
            view,
            label=f"λ{k}",
            color=color,
            style=style,
        )
        first = first if first is not None else shown
    top.set_ylabel("GGN eigenvalue", fontsize=8)
    set_log_y(top, inst.log_y_for(view))
    legend(top)
    step_axis(top, view)
    subtitle(top, newest(first, label="λ1") if first is not None else "")
    for color, (key, label, symbol) in zip(COLORS, _SNRS, strict=False):
        prefix = f"curvature_noise.{key}"
        series = [
            (k, run.series(f"{prefix}.{k}").between(*view.steps))
            for k in directions(run, prefix)
        ]
        latest = [(k, s.values[-1]) for k, s in series if len(s)]
        marker = "o" if symbol == "circle" else "D"
        bottom.plot(
            [k for k, _ in latest],
            [v for _, v in latest],
            marker,
            color=color,
            ms=6,
            label=f"{label} SNR",
        )
    bottom.set_xlabel("direction", fontsize=8)
    bottom.set_ylabel("SNR", fontsize=8)
    if run.has("curvature_noise"):
        reference(bottom, 1.0, "SNR 1")
        set_log_y(bottom, inst.log_y_for(view))
        legend(bottom)
        subtitle(bottom, "newest SNR per direction")
    else:
        note(bottom, f"No curvature_noise logged. {how_to_fill('curvature_noise')}")
