"""The Hessian's top eigenvalue over steps, against the stability limit 2 / lr."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, header, set_axes
from cockpit.instruments._view import View

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
    title = "Hessian top eigenvalue"
    how_to_read = (
        "The sharpest direction of the loss surface: for plain gradient descent a top "
        "eigenvalue above 2/lr is unstable, and training at the edge of stability "
        "hovers near that line. Crosses mark estimates that did not converge."
    )
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
