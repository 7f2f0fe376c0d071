"""Layer stiffness: each layer's Kronecker-factored curvature block."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import add_series, color, header, new_figure, set_axes
from cockpit.instruments._report_axes import (
    COLORS,
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

__all__ = ["KfacBlockGauge"]

_TOP = "kfac_block.max_eigenvalue"
_CONDITION = "kfac_block.condition"
_NONZERO = "kfac_block.nonzero_condition"
_NONZERO_TITLE = "condition, nonzero spectrum (x: none)"
_OLD_TITLE = "condition number (x: singular)"


def _condition(run: RunData) -> tuple[str, str]:
    """The condition key to show and its title.

    Nearly every block is singular (softmax's all-ones direction, dead units), so
    the plain condition number is almost always infinite; the one over the nonzero
    spectrum carries the information. Logs written before it existed show the
    plain one.
    """
    return (_NONZERO, _NONZERO_TITLE) if run.has(_NONZERO) else (_CONDITION, _OLD_TITLE)


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
    selected layer (or the whole model) over steps. The condition number is the
    one over the nonzero spectrum (``nonzero_condition``); a NaN one is drawn as
    a cross at 1.
    """

    id = "kfac_block"
    quantities = ("kfac_block",)
    per_layer = True
    log_y = True
    height = 480

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(
            2,
            2,
            specs=[[{}, {}], [{"colspan": 2}, None]],
            subplot_titles=("top eigenvalue", _condition(runs[0])[1], ""),
            vertical_spacing=0.18,
            horizontal_spacing=0.1,
        )
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            for col, quantity in ((1, _TOP), (2, _condition(run)[0])):
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

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """Per layer the newest top eigenvalue and condition number; the top over steps."""
        grid = cell.add_gridspec(2, 2, height_ratios=[1, 1])
        log = self.log_y_for(view)
        for col, (quantity, title) in enumerate(
            ((_TOP, "top eigenvalue"), _condition(run))
        ):
            ax = cell.add_subplot(grid[0, col])
            layers, values = _latest(run, quantity, view)
            subtitle(ax, title)
            if not layers:
                note(ax, f"no per-layer {quantity} logged")
                continue
            positions = np.arange(len(layers))
            heights = np.nan_to_num(values, nan=0.0)
            ax.bar(positions, heights, color=COLORS[0], alpha=0.8)
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
        where = "whole model" if layer is None else layer
        subtitle(history, newest_text(shown, label=where))

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
        if quantity != _TOP and singular:
            figure.add_trace(
                go.Scatter(
                    x=singular,
                    y=[1.0] * len(singular),
                    mode="markers",
                    marker={"symbol": "x", "color": color(index), "size": 9},
                    name=f"{run.name} singular",
                    legendgroup=run.name,
                    showlegend=False,
                    hovertemplate="%{x}: no finite condition number"
                    "<extra>" + run.name + "</extra>",
                ),
                row=1,
                col=2,
            )
