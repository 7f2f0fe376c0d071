"""The training loss with its per-sample spread, plus the metrics the user logged."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cockpit.catalog import ENTRIES
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, color, header, set_axes
from cockpit.instruments._report_axes import (
    COLORS,
    STYLES,
    legend,
    newest_text,
    plot_series,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._series import ema, even_indices
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import SubFigure

__all__ = ["LossGauge", "user_metrics"]

_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")


def user_metrics(run: RunData) -> list[str]:
    """Scalars the user logged with ``ck.log(...)``: any key the tracker does not log."""
    return [
        q
        for q in run.quantities()
        if q.split(".", 1)[0] not in ENTRIES and not run.layers(q)
    ]


def loss_band(
    run: RunData, view: View
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Steps, and lower and upper edge of the loss +- one per-sample standard deviation.

    Both the loss and the per-sample standard deviation are moving averages, thinned to
    ``view.max_points``; ``None`` with fewer than two finite steps. The dashboard and
    the static report draw the same band.
    """
    loss = run.series("loss").between(*view.steps)
    variance = run.series("loss.variance").between(*view.steps)
    steps, at_loss, at_var = np.intersect1d(
        loss.steps, variance.steps, return_indices=True
    )
    keep = np.isfinite(loss.values[at_loss]) & np.isfinite(variance.values[at_var])
    if keep.sum() < 2:
        return None
    mean = ema(loss.values[at_loss][keep])
    spread = ema(np.sqrt(np.maximum(variance.values[at_var][keep], 0.0)))
    pick = even_indices(len(mean), view.max_points)
    return steps[keep][pick], (mean - spread)[pick], (mean + spread)[pick]


def _band(figure: go.Figure, run: RunData, index: int, view: View) -> None:
    """The loss band as a filled area in the first row."""
    band = loss_band(run, view)
    if band is None:
        return
    x, low, high = band
    figure.add_trace(
        go.Scatter(
            x=np.concatenate([x, x[::-1]]),
            y=np.concatenate([high, low[::-1]]),
            fill="toself",
            fillcolor=color(index, 0.12),
            line={"width": 0},
            name=f"{run.name} per-sample spread",
            legendgroup=run.name,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )


class LossGauge(Instrument):
    """``loss`` with a band of +- one per-sample standard deviation, and user metrics.

    Metrics the user logged whose name contains "loss" share the loss axis (dashed);
    the others (accuracy, ...) get a second row. They are drawn as logged, without
    moving average: they are usually sparse and already averaged over a data set.
    """

    id = "loss"
    quantities = ("loss",)
    height = 440

    def available(self, run: RunData) -> bool:
        return run.has("loss") or bool(user_metrics(run))

    def watched(self, run: RunData) -> tuple[str, ...]:
        return ("loss", *user_metrics(run))

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        metrics = [user_metrics(run) for run in runs]
        others = any("loss" not in m for ms in metrics for m in ms)
        # Always subplots, so traces can name their cell even with one row.
        figure = make_subplots(
            rows=2 if others else 1, cols=1, shared_xaxes=True, vertical_spacing=0.1
        )
        newest: list[tuple[str, Series]] = []
        for index, (run, names) in enumerate(zip(runs, metrics, strict=True)):
            _band(figure, run, index, view)
            shown = add_series(
                figure,
                run.series("loss"),
                view,
                name=f"{run.name} loss",
                index=index,
                group=run.name,
                cell=(1, 1),
            )
            newest.append((run.name, shown))
            for dash, name in zip(_DASHES * 4, names, strict=False):
                add_series(
                    figure,
                    run.series(name),
                    view,
                    name=f"{run.name} {name}",
                    index=index,
                    group=run.name,
                    dash=dash,
                    cell=(1, 1) if "loss" in name else (2, 1),
                    smooth=False,  # sparse, and already averaged over a data set
                    markers=True,
                )
        log = self.log_y_for(view)
        set_axes(figure, view, log, (1, 1), y_title="loss", x_title=not others)
        if others:
            set_axes(figure, view, self.log_y_for(view), (2, 1), y_title="your metrics")
        figure.update_layout(title_text=header(self.title, newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The loss with its per-sample band; the user's metrics as logged."""
        metrics = user_metrics(run)
        others = [m for m in metrics if "loss" not in m]
        rows = 2 if others else 1
        axes = list(cell.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
        _report_band(axes[0], run, view)
        shown = plot_series(axes[0], run.series("loss"), view, label="loss")
        for line_color, style, name in zip(
            COLORS[1:] * 4, STYLES[1:] * 4, metrics, strict=False
        ):
            ax = axes[0] if "loss" in name else axes[1]
            plot_series(
                ax,
                run.series(name),
                view,
                label=name,
                color=line_color,
                style=style,
                smooth=False,  # sparse, and already averaged over a data set
                markers=True,
            )
        axes[0].set_ylabel("loss", fontsize=8)
        for ax in axes:
            set_log_y(ax, self.log_y_for(view))
            legend(ax)
        if others:
            axes[1].set_ylabel("your metrics", fontsize=8)
        step_axis(axes[-1], view)
        subtitle(axes[0], newest_text(shown))


def _report_band(ax: Axes, run: RunData, view: View) -> None:
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
