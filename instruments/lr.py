"""The learning rate of each parameter group, over steps."""

from __future__ import annotations

import plotly.graph_objects as go
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, header, set_axes
from cockpit.instruments._lines import LinesInstrument
from cockpit.instruments._view import View

__all__ = ["LearningRateGauge"]

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


class LearningRateGauge(LinesInstrument):
    """``lr``: one exact line per parameter group (the total if there is one group)."""

    id = "lr"
    title = "Learning rate"
    how_to_read = (
        "The schedule as the optimizer applied it: read the other panels' changes "
        "against its warm-ups, decays and restarts."
    )
    quantities = ("lr",)
    rows = (("lr",),)
    smooth = False
    log_y = True

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
        set_axes(figure, view, self.log_y_for(view), y_title="learning rate")
        figure.update_layout(title_text=header(self.title, newest))
        return figure
