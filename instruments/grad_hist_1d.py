"""The distribution of per-sample gradient elements: the newest, and over steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import Histogram, RunData
from cockpit.instruments._figures import color, fmt, new_figure, set_axes
from cockpit.instruments._report_axes import (
    COLORS,
    heatmap,
    note,
    step_axis,
    subtitle,
)
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["GradHist1dGauge", "in_range", "reach", "rebin"]

_GRID_BINS = 64
_SCALED = "element / step's largest"
"""The heat map's value axis: each step divided by its :func:`reach`."""


def _reaches(hists: list[Histogram]) -> str:
    """``"largest |element| 0.8 → 0.07"``: how the scale moved, first to newest."""
    return f"largest |element| {fmt(reach(hists[0]))} → {fmt(reach(hists[-1]))}"


def in_range(hists: list[Histogram], view: View) -> list[Histogram]:
    """The histograms whose step is inside the view's step range."""
    low, high = view.steps
    return [
        h
        for h in hists
        if (low is None or h.step >= low) and (high is None or h.step <= high)
    ]


def reach(hist: Histogram) -> float:
    """The largest magnitude a histogram covers: ``max(|first edge|, |last edge|)``."""
    return float(max(abs(hist.edges[0]), abs(hist.edges[-1])))


def rebin(
    hists: list[Histogram], bins: int = _GRID_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Put histograms with their own edges onto one grid, each scaled to its reach.

    The tracker's edges span each step's smallest and largest element, and the
    gradients shrink during training: on one grid of absolute values the late
    steps would collapse into a thin band around 0. So each histogram's values are
    divided by its :func:`reach` first: the grid spans ``[-1, 1]``, every step fills
    it, and the shape (a spike at 0, heavy tails) stays comparable across steps.
    Each bin's weight goes to the grid bin holding its scaled center; counts are
    normalized per histogram to fractions.

    Args:
        hists: 1D histograms.
        bins: Bins of the common grid.

    Returns:
        ``(edges [bins + 1] on [-1, 1], fractions [len(hists), bins])``.

    """
    edges = np.linspace(-1.0, 1.0, bins + 1)
    rows = np.zeros((len(hists), bins))
    for i, hist in enumerate(hists):
        counts = np.nan_to_num(hist.counts, nan=0.0)
        scale = reach(hist)
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0  # every element is 0: one bin at the center
        centers = 0.5 * (hist.edges[:-1] + hist.edges[1:]) / scale
        rows[i], _ = np.histogram(np.clip(centers, -1, 1), bins=edges, weights=counts)
        total = rows[i].sum()
        if total > 0:
            rows[i] /= total
    return edges, rows


class GradHist1dGauge(Instrument):
    """``grad_hist_1d``: newest histogram per run and a step x bin heat map."""

    id = "grad_hist_1d"
    quantities = ("grad_hist_1d",)
    log_y = True
    height = 380

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(1, 2, column_widths=[0.4, 0.6], horizontal_spacing=0.12)
        newest = []
        for index, run in enumerate(runs):
            hists = in_range(run.histograms("grad_hist_1d"), view)
            if not hists:
                continue
            latest = hists[-1]
            counts = np.nan_to_num(latest.counts, nan=0.0)
            total = counts.sum() or 1.0
            centers = 0.5 * (latest.edges[:-1] + latest.edges[1:])
            figure.add_trace(
                go.Scatter(
                    x=centers,
                    y=counts / total,
                    line={"shape": "hvh", "color": color(index)},
                    name=f"{run.name} @ {latest.step}",
                    legendgroup=run.name,
                ),
                row=1,
                col=1,
            )
            newest.append(f"{run.name} @ {latest.step}")
        scaled = self._heatmap(figure, runs, view)
        figure.update_xaxes(title_text="gradient element", row=1, col=1)
        figure.update_yaxes(
            type="log" if self.log_y_for(view) else "linear",
            title_text="fraction",
            row=1,
            col=1,
        )
        figure.update_layout(
            title_text=f"<b>{self.title}</b><br><sup>newest: {' · '.join(newest)}"
            f"{scaled}</sup>"
        )
        return figure

    def _heatmap(self, figure: go.Figure, runs: list[RunData], view: View) -> str:
        """The step x bin heat map of the first run with histograms; its scales."""
        shown = [(r, in_range(r.histograms("grad_hist_1d"), view)) for r in runs]
        run, hists = next(((r, h) for r, h in shown if h), (None, []))
        if run is None:
            figure.add_annotation(
                text="no histogram in this step range",
                xref="x2 domain",
                yref="y2 domain",
                x=0.5,
                y=0.5,
                showarrow=False,
            )
            return ""
        edges, fractions = rebin(hists)
        with np.errstate(divide="ignore"):
            z = np.where(fractions > 0, np.log10(fractions), np.nan)
        reaches = np.array([reach(h) for h in hists])
        figure.add_trace(
            go.Heatmap(
                x=[h.step for h in hists],
                y=0.5 * (edges[:-1] + edges[1:]),
                z=z.T,
                customdata=np.broadcast_to(reaches, z.T.shape),
                colorscale="Viridis",
                colorbar={"title": {"text": "log10 fraction"}},
                name=run.name,
                hovertemplate="step %{x}, %{y:.2f} x %{customdata:.3g}: "
                "10^%{z:.2f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
        set_axes(figure, view, False, (1, 2), y_title=_SCALED + f" ({run.name})")
        return f" · heat map scaled per step: {_reaches(hists)}"

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The newest histogram, and all of them as a step x bin heat map."""
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
        if self.log_y_for(view) and counts.any():
            left.set_yscale("log")
        subtitle(left, f"step {latest.step}")
        edges, fractions = rebin(hists)
        with np.errstate(divide="ignore"):
            z = np.where(fractions > 0, np.log10(fractions), np.nan)
        steps = np.array([h.step for h in hists])
        heatmap(cell, right, steps, edges, z.T, "log10 fraction")
        right.set_ylabel(_SCALED, fontsize=8)
        subtitle(right, f"each step / its {_reaches(hists)}")
