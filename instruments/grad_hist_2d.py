"""The joint density of parameter values and per-sample gradient elements."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import Histogram, RunData
from cockpit.instruments._figures import new_figure
from cockpit.instruments._report_axes import COLORS, heatmap, note, subtitle
from cockpit.instruments._view import View
from cockpit.instruments.grad_hist_1d import in_range

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["GradHist2dGauge"]


class GradHist2dGauge(Instrument):
    """``grad_hist_2d``: newest 2D density with its two marginals.

    Shows the whole model, or the selected layer; the first selected run that has
    the histogram.
    """

    id = "grad_hist_2d"
    quantities = ("grad_hist_2d",)
    per_layer = True
    log_y = True
    height = 440

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        layer = view.layer
        run = next(r for r in runs if r.histograms("grad_hist_2d"))
        hists = in_range(run.histograms("grad_hist_2d", layer), view)
        if not hists and layer is not None:
            layer, hists = None, in_range(run.histograms("grad_hist_2d"), view)
        figure = new_figure(
            2,
            2,
            shared_xaxes=True,
            shared_yaxes=True,
            column_widths=[0.8, 0.2],
            row_heights=[0.2, 0.8],
            horizontal_spacing=0.02,
            vertical_spacing=0.03,
        )
        if not hists:
            figure.update_layout(title_text=f"<b>{self.title}</b> (no data in range)")
            return figure
        hist = hists[-1]
        _density(figure, hist, run.name, self.log_y_for(view))
        where = f"layer {layer}" if layer else "whole model"
        figure.update_layout(
            title_text=f"<b>{self.title}</b><br><sup>{run.name}, {where}, "
            f"step {hist.step}</sup>",
            bargap=0,
        )
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The newest 2D density with both marginals, whole model or the layer."""
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
        log = self.log_y_for(view)
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
        marginal = {"fill": True, "color": COLORS[0], "alpha": 0.6}
        above.stairs(counts.sum(axis=1), hist.edges, **marginal)
        beside.stairs(counts.sum(axis=0), y_edges, orientation="horizontal", **marginal)
        # The marginals' count axes: their shape matters, not their numbers.
        above.tick_params(labelbottom=False, labelleft=False, left=False)
        beside.tick_params(labelbottom=False, labelleft=False, bottom=False)
        main.set_xlabel("parameter value", fontsize=8)
        main.set_ylabel("gradient element", fontsize=8)
        where = "whole model" if view.layer is None else f"layer {view.layer}"
        subtitle(above, f"{where}, step {hist.step}")


def _density(figure: go.Figure, hist: Histogram, name: str, log: bool) -> None:
    """The 2D histogram as a heat map, its marginals as bars above and beside it."""
    counts = np.nan_to_num(hist.counts, nan=0.0)
    x_mid = 0.5 * (hist.edges[:-1] + hist.edges[1:])
    y_edges = (
        hist.y_edges if hist.y_edges is not None else np.arange(counts.shape[1] + 1)
    )
    y_mid = 0.5 * (y_edges[:-1] + y_edges[1:])
    with np.errstate(divide="ignore"):
        z = np.where(counts > 0, np.log10(counts), np.nan) if log else counts
    figure.add_trace(
        go.Heatmap(
            x=x_mid,
            y=y_mid,
            z=z.T,
            colorscale="Viridis",
            colorbar={"title": {"text": "log10 count" if log else "count"}},
            hovertemplate="parameter %{x:.3g}, gradient %{y:.3g}: %{z:.3g}"
            "<extra></extra>",
            name=name,
        ),
        row=2,
        col=1,
    )
    marginal = {"marker": {"color": "rgba(31,119,180,0.6)"}, "showlegend": False}
    figure.add_trace(go.Bar(x=x_mid, y=counts.sum(axis=1), **marginal), row=1, col=1)
    figure.add_trace(
        go.Bar(y=y_mid, x=counts.sum(axis=0), orientation="h", **marginal),
        row=2,
        col=2,
    )
    figure.update_xaxes(title_text="parameter value", row=2, col=1)
    figure.update_yaxes(title_text="gradient element", row=2, col=1)
    # The marginals' count axes: their shape matters, not their numbers.
    scale = {"type": "log" if log else "linear", "showticklabels": False}
    figure.update_yaxes(**scale, row=1, col=1)
    figure.update_xaxes(**scale, row=2, col=2)
