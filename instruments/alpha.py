"""Alpha: where each step landed in the local quadratic along it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData
from cockpit.instruments._figures import (
    add_series,
    color,
    header,
    hline,
    new_figure,
    set_axes,
)
from cockpit.instruments._report_axes import (
    COLORS,
    follow_bulk,
    newest_text,
    plot_series,
    reference,
    step_axis,
    subtitle,
)
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["AlphaGauge"]

_KEY = ((-1.0, "start"), (0.0, "valley floor"), (1.0, "opposite side"))
"""The parabola's marked points; their labels sit outside them, so they never meet:
"start" to the left, "opposite side" to the right, "valley floor" above its point."""
_PLOTLY_PLACES = ("top left", "top center", "top right")
_REPORT_PLACES = (("right", -3), ("center", 0), ("left", 3))


def _bins(values: list[np.ndarray]) -> np.ndarray:
    """Common bins of all runs: the central 90 % of values, always covering [-1.5, 1.5].

    Alpha is heavy-tailed (a step that lands near a kink of the loss can give -2500);
    wider bins would squeeze the parabola of the key and the bulk into one bin.
    """
    joined = np.concatenate(values)
    low, high = np.percentile(joined, [5, 95]) if len(joined) else (-1.0, 1.0)
    return np.linspace(min(low, -1.5), max(high, 1.5), 41)


class AlphaGauge(Instrument):
    """``alpha``: its distribution (all steps vs the last 10 %) and its history."""

    id = "alpha"
    quantities = ("alpha",)
    log_allowed = False
    height = 380

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(1, 2, column_widths=[0.4, 0.6], horizontal_spacing=0.1)
        shown = [run.series("alpha").between(*view.steps).finite() for run in runs]
        bins = _bins([s.values for s in shown])
        top = 0.0
        for index, (run, series) in enumerate(zip(runs, shown, strict=True)):
            if len(series) == 0:
                continue
            recent = series.values[int(0.9 * len(series)) :]
            for part, values, style in (
                ("all steps", series.values, {"fill": "tozeroy", "dash": "solid"}),
                ("last 10 %", recent, {"dash": "dot"}),
            ):
                density, _ = np.histogram(values, bins=bins, density=True)
                top = max(top, float(density.max()))
                figure.add_trace(
                    go.Scatter(
                        x=bins[:-1],
                        y=density,
                        line={
                            "shape": "hv",
                            "color": color(index),
                            "dash": style["dash"],
                        },
                        fill=style.get("fill"),
                        fillcolor=color(index, 0.15),
                        name=f"{run.name} {part}",
                        legendgroup=run.name,
                    ),
                    row=1,
                    col=1,
                )
            add_series(
                figure,
                series,
                view,
                name=run.name,
                index=index,
                group=run.name,
                cell=(1, 2),
            )
        self._parabola(figure, top or 1.0)
        figure.update_xaxes(title_text="alpha", row=1, col=1)
        figure.update_yaxes(title_text="density", row=1, col=1)
        hline(figure, 0.0, "valley floor", (1, 2))
        set_axes(figure, view, False, (1, 2), y_title="alpha")
        newest = list(zip([r.name for r in runs], shown, strict=True))
        figure.update_layout(title_text=header(self.title, newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """Densities (all steps, last 10 %) over the parabola key; the history."""
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
            with np.errstate(invalid="ignore"):  # no value inside the bins: NaN
                density, _ = np.histogram(values, bins=bins, density=True)
            top = max(top, float(np.nanmax(density, initial=0.0)))
            left.stairs(density, bins, ls=style, color=COLORS[0], lw=1.4, label=part)
        top = top or 1.0
        x = np.linspace(-1.3, 1.3, 53)
        left.plot(x, top * x**2, ls="--", color="0.55", lw=1, label="local quadratic")
        for (position, label), (ha, dx) in zip(_KEY, _REPORT_PLACES, strict=True):
            left.plot(position, top * position**2, "o", color="0.3", ms=4)
            left.annotate(
                label,
                (position, top * position**2),
                xytext=(dx, 4),
                textcoords="offset points",
                ha=ha,
                fontsize=7,
            )
        left.set_ylim(0, 1.9 * top)
        left.set_xlabel("alpha")
        left.set_ylabel("density", fontsize=8)
        left.legend(fontsize=7, loc="upper left")  # above the key's labels
        shown = plot_series(right, run.series("alpha"), view)
        reference(right, 0.0, "valley floor")
        follow_bulk(right)
        right.set_ylabel("alpha", fontsize=8)
        step_axis(right, view)
        subtitle(right, newest_text(shown))

    @staticmethod
    def _parabola(figure: go.Figure, top: float) -> None:
        """The normalized parabola as a visual key, scaled to the densities."""
        x = np.linspace(-1.3, 1.3, 53)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=top * (x**2),
                mode="lines",
                line={"color": "rgba(120,120,120,0.6)", "dash": "dash"},
                name="local quadratic",
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=[x for x, _ in _KEY],
                y=[top * x**2 for x, _ in _KEY],
                mode="markers+text",
                text=[label for _, label in _KEY],
                textposition=list(_PLOTLY_PLACES),
                textfont={"size": 9},
                cliponaxis=False,
                marker={"color": "rgba(80,80,80,0.9)", "size": 7},
                showlegend=False,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
