"""The Hessian's top eigenvalue over steps, against the stability limit 2 / lr."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, header, set_axes
from cockpit.instruments._report_axes import (
    COLORS,
    legend,
    newest_text,
    note,
    plot_series,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["HessMaxEvGauge"]


def _at(series: Series, steps: np.ndarray) -> np.ndarray:
    """Values of ``series`` at ``steps`` (NaN where it has none)."""
    out = np.full(len(steps), np.nan)
    found = np.isin(steps, series.steps)
    if found.any():
        position = np.searchsorted(series.steps, steps[found])
        out[found] = series.values[position]
    return out


class HessMaxEvGauge(Instrument):
    """``hess_max_ev`` with ``2 / lr`` and the non-converged estimates marked."""

    id = "hess_max_ev"
    quantities = ("hess_max_ev",)
    log_y = True  # the eigenvalue and 2/lr are often orders of magnitude apart

    def watched(self, run: RunData) -> tuple[str, ...]:
        return (*self.quantities, "lr")

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = go.Figure()
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            shown = add_series(
                figure,
                run.series("hess_max_ev"),
                view,
                name=run.name,
                index=index,
                group=run.name,
            )
            newest.append((run.name, shown))
            if len(shown) == 0:
                continue
            lr = run.series("lr").between(*view.steps).finite()
            if len(lr) and np.all(lr.values > 0):
                add_series(
                    figure,
                    Series(lr.steps, 2.0 / lr.values),
                    view,
                    name=f"{run.name} 2/lr",
                    index=index,
                    group=run.name,
                    dash="dash",
                    smooth=False,
                )
            self._unconverged(figure, run, shown)
        set_axes(figure, view, self.log_y_for(view), y_title="top eigenvalue")
        figure.update_layout(title_text=header(self.title, newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The top eigenvalue against ``2 / lr``; crosses mark unconverged estimates."""
        ax = cell.subplots()
        shown = plot_series(ax, run.series("hess_max_ev"), view, label="top eigenvalue")
        lr = run.series("lr").between(*view.steps).finite()
        if len(shown) and len(lr) and np.all(lr.values > 0):
            limit = Series(lr.steps, 2.0 / lr.values)
            plot_series(
                ax,
                limit,
                view,
                label="2 / lr",
                color=COLORS[1],
                style="--",
                smooth=False,
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
        set_log_y(ax, self.log_y_for(view))
        step_axis(ax, view)
        subtitle(ax, newest_text(shown))
        if len(shown) == 0:
            note(ax, "no finite hess_max_ev in this step range")

    @staticmethod
    def _unconverged(figure: go.Figure, run: RunData, shown: Series) -> None:
        converged = _at(run.series("hess_max_ev.converged"), shown.steps)
        bad = converged == 0
        if not bad.any():
            return
        iterations = _at(run.series("hess_max_ev.iterations"), shown.steps)[bad]
        residual = _at(run.series("hess_max_ev.residual"), shown.steps)[bad]
        figure.add_trace(
            go.Scatter(
                x=shown.steps[bad],
                y=shown.values[bad],
                mode="markers",
                marker={"symbol": "x-open", "size": 10, "color": "#d00000"},
                name=f"{run.name} not converged",
                legendgroup=run.name,
                customdata=np.stack([iterations, residual], axis=1),
                hovertemplate="step %{x}: %{y:.4g}, not converged after "
                "%{customdata[0]} iterations (residual %{customdata[1]:.2g})"
                "<extra></extra>",
            )
        )
