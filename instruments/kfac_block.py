"""Layer stiffness: each layer's Kronecker-factored curvature block."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, color, header, new_figure, set_axes
from cockpit.instruments._view import View

__all__ = ["KfacBlockGauge"]

_TOP = "kfac_block.max_eigenvalue"
_CONDITION = "kfac_block.condition"


def _latest(run: RunData, quantity: str, view: View) -> tuple[list[str], np.ndarray]:
    """The newest value in the step range of each layer (a logged NaN: singular)."""
    layers, values = [], []
    for layer in run.layers(quantity):
        series = run.series(quantity, layer).between(*view.steps)
        if len(series):
            layers.append(layer)
            values.append(series.values[-1])
    return layers, np.asarray(values, dtype=float)


class KfacBlockGauge(Instrument):
    """``kfac_block``: per layer, the newest top eigenvalue and condition number.

    Bars per layer (runs side by side), and below the top eigenvalue of the
    selected layer (or the whole model) over steps. A NaN condition number
    (a singular factor) is drawn as a cross at 1.
    """

    id = "kfac_block"
    title = "Layer stiffness (KFAC blocks)"
    how_to_read = (
        "The stiffest and worst-conditioned layers are where one learning rate for all "
        "layers hurts most: candidates for per-layer learning rates or normalization."
    )
    quantities = ("kfac_block",)
    per_layer = True
    log_y = True
    height = 480

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(
            2,
            2,
            specs=[[{}, {}], [{"colspan": 2}, None]],
            subplot_titles=("top eigenvalue", "condition number (x: singular)", ""),
            vertical_spacing=0.18,
            horizontal_spacing=0.1,
        )
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            for col, quantity in ((1, _TOP), (2, _CONDITION)):
                self._bars(figure, run, index, quantity, col, view)
            layer = view.layer if view.layer in run.layers(_TOP) else None
            shown = add_series(
                figure,
                run.series(_TOP, layer),
                view,
                name=run.name,
                index=index,
                group=run.name,
                cell=(2, 1),
            )
            newest.append((run.name, shown))
        log = self.log_y_for(view)
        for col in (1, 2):
            figure.update_yaxes(type="log" if log else "linear", row=1, col=col)
        where = f"layer {view.layer}" if view.layer else "whole model"
        set_axes(figure, view, log, (2, 1), y_title=f"top eigenvalue ({where})")
        figure.update_layout(title_text=header(self.title, newest), barmode="group")
        return figure

    @staticmethod
    def _bars(
        figure: go.Figure, run: RunData, index: int, quantity: str, col: int, view: View
    ) -> None:
        layers, values = _latest(run, quantity, view)
        if not layers:
            return
        figure.add_trace(
            go.Bar(
                x=layers,
                y=values,
                marker={"color": color(index, 0.8)},
                name=f"{run.name} {quantity.split('.')[1]}",
                legendgroup=run.name,
                showlegend=False,
                hovertemplate="%{x}: %{y:.4g}<extra>" + run.name + "</extra>",
            ),
            row=1,
            col=col,
        )
        singular = [
            layer for layer, v in zip(layers, values, strict=True) if np.isnan(v)
        ]
        if quantity == _CONDITION and singular:
            figure.add_trace(
                go.Scatter(
                    x=singular,
                    y=[1.0] * len(singular),
                    mode="markers",
                    marker={"symbol": "x", "color": color(index), "size": 9},
                    name=f"{run.name} singular",
                    legendgroup=run.name,
                    showlegend=False,
                    hovertemplate="%{x}: singular (infinite condition number)"
                    "<extra>" + run.name + "</extra>",
                ),
                row=1,
                col=2,
            )
