"""The learning rate of each parameter group, over steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, header, set_axes
from cockpit.instruments._lines import LinesInstrument
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
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["LearningRateGauge"]

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


class LearningRateGauge(LinesInstrument):
    """``lr``: one exact line per parameter group (the total if there is one group)."""

    id = "lr"
    quantities = ("lr",)
    rows = (("lr",),)
    smooth = False
    log_y = True

    def log_for(self, runs: list[RunData], view: View) -> bool:
        """A log axis only for a schedule that spans a decade, unless asked for.

        A constant learning rate on a log axis is one line among decade ticks (and
        the report, :func:`~cockpit.instruments._report_axes.set_log_y`, draws it
        linear anyway).
        """
        if view.y_scale != "auto":
            return self.log_y_for(view)
        values = [
            series.between(*view.steps).finite().values
            for run in runs
            for series in [
                run.series("lr"),
                *(run.series("lr", g) for g in run.layers("lr")),
            ]
        ]
        joined = np.concatenate(values) if values else np.empty(0)
        positive = joined[joined > 0]
        return bool(len(positive)) and positive.max() >= 10 * positive.min()

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = go.Figure()
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            groups = run.layers("lr")
            parts = (
                [(g, run.series("lr", g)) for g in groups] if len(groups) > 1 else []
            )
            for dash, (group, series) in zip(
                _DASHES, parts or [("", run.series("lr"))], strict=False
            ):
                add_series(
                    figure,
                    series,
                    view,
                    name=f"{run.name} {group}".strip(),
                    index=index,
                    group=run.name,
                    dash=dash,
                    smooth=False,
                )
            newest.append((run.name, run.series("lr").between(*view.steps).finite()))
        set_axes(figure, view, self.log_for(runs, view), y_title="learning rate")
        figure.update_layout(title_text=header(self.title, newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
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
        set_log_y(ax, self.log_y_for(view))
        step_axis(ax, view)
        subtitle(ax, newest_text(run.series("lr").between(*view.steps).finite()))
