"""A generic instrument: quantities over steps, one subplot per row of quantities.

The dashboard's plotly figure and the report's matplotlib cell read what to draw
(rows, labels, reference lines, scales) from the same class attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import (
    add_series,
    header,
    hline,
    new_figure,
    set_axes,
)
from cockpit.instruments._report_axes import (
    COLORS,
    STYLES,
    heatmap,
    legend,
    newest_text,
    note,
    plot_series,
    reference,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._series import layer_matrix
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import SubFigure

__all__ = ["LayerMapInstrument", "LinesInstrument"]

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


class LinesInstrument(Instrument):
    """Quantities over steps with moving averages, runs overlaid.

    Attributes:
        rows: Per subplot row, the quantities drawn in it (told apart by dash).
        labels: ``(key, label)`` pairs naming quantities in legends; default the key.
        reference: ``(y, text)`` of a dotted line on every row, or ``None``.
        smooth: ``False`` draws exact values as plain lines.
        unit: Unit of the newest value in the header.
        below: Whether a subclass draws another subplot below the rows.

    """

    rows: ClassVar[tuple[tuple[str, ...], ...]]
    labels: ClassVar[tuple[tuple[str, str], ...]] = ()
    reference: ClassVar[tuple[float, str] | None] = None
    smooth: ClassVar[bool] = True
    unit: ClassVar[str] = ""
    below: ClassVar[bool] = False

    def label(self, quantity: str) -> str:
        """Legend label of ``quantity``."""
        return dict(self.labels).get(quantity, quantity)

    def series_of(self, run: RunData, quantity: str, view: View) -> Series:
        """The series drawn for ``quantity``: the selected layer if per layer."""
        layer = view.layer if self.per_layer else None
        if layer is not None and layer in run.layers(quantity):
            return run.series(quantity, layer)
        return run.series(quantity)

    def layer_note(self, runs: list[RunData], view: View) -> str:
        """`` (layer x)`` if the selected layer is shown, else ``""``."""
        if (
            self.per_layer
            and view.layer is not None
            and any(
                view.layer in run.layers(q) for run in runs for q in self.quantities
            )
        ):
            return f" (layer {view.layer})"
        return ""

    def layout(self) -> tuple[go.Figure, list[tuple[int, int] | None]]:
        """The empty figure and the cell of each row of :attr:`rows`."""
        if len(self.rows) == 1:
            return go.Figure(), [None]
        figure = new_figure(len(self.rows), 1, shared_xaxes=True, vertical_spacing=0.1)
        return figure, [(row + 1, 1) for row in range(len(self.rows))]

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure, cells = self.layout()
        multi = sum(map(len, self.rows)) > 1
        newest: list[tuple[str, Series]] = []
        drawn: set[str] = set()
        for index, run in enumerate(runs):
            for cell, quantities in zip(cells, self.rows, strict=True):
                for dash, quantity in zip(_DASHES, quantities, strict=False):
                    shown = add_series(
                        figure,
                        self.series_of(run, quantity, view),
                        view,
                        name=f"{run.name} {self.label(quantity)}"
                        if multi
                        else run.name,
                        index=index,
                        group=run.name,
                        cell=cell,
                        dash=dash,
                        smooth=self.smooth,
                    )
                    if quantity == self.rows[0][0]:
                        newest.append((run.name, shown))
                    if len(shown):
                        drawn.add(quantity)
        for row, (cell, quantities) in enumerate(zip(cells, self.rows, strict=True)):
            # Name only what is drawn: no "CABS" on the axis of a run without it.
            named = [q for q in quantities if q in drawn] or quantities
            y_title = " / ".join(self.label(q) for q in named)
            bottom = row == len(self.rows) - 1 and not self.below
            log = self.log_y_for(view)
            if self.reference is not None:
                hline(figure, self.reference[0], self.reference[1], cell)
            set_axes(figure, view, log, cell, y_title=y_title, x_title=bottom)
        title = self.title + self.layer_note(runs, view)
        figure.update_layout(title_text=header(title, newest, self.unit))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        axes, first = self.report_rows(cell, run, view)
        subtitle(axes[0], newest_text(first, self.unit))

    def report_rows(
        self, cell: SubFigure, run: RunData, view: View
    ) -> tuple[list[Axes], Series]:
        """One matplotlib axes per row of :attr:`rows`, drawn.

        Returns:
            The axes, and the first quantity's series as drawn.

        """
        axes = list(cell.subplots(len(self.rows), 1, sharex=True, squeeze=False)[:, 0])
        first = self._plot_rows(axes, run, view)
        step_axis(axes[-1], view)
        return axes, first

    def _plot_rows(self, axes: list[Axes], run: RunData, view: View) -> Series:
        """Draw :attr:`rows` into ``axes``; the first quantity's series."""
        first = Series(np.empty(0, np.int64), np.empty(0))
        colors = iter(COLORS)
        for ax, quantities in zip(axes, self.rows, strict=True):
            for style, quantity in zip(STYLES, quantities, strict=False):
                shown = plot_series(
                    ax,
                    self.series_of(run, quantity, view),
                    view,
                    label=self.label(quantity),
                    color=next(colors),
                    style=style,
                    smooth=self.smooth,
                )
                if quantity == self.rows[0][0]:
                    first = shown
            if len(quantities) > 1:
                legend(ax)
            else:
                ax.set_ylabel(self.label(quantities[0]), fontsize=8)
            if self.reference is not None:
                reference(ax, *self.reference)
            set_log_y(ax, self.log_y_for(view))
        return first


class LayerMapInstrument(LinesInstrument):
    """Lines of the total (or selected layer) above a layer x step heat map.

    The heat map shows the first selected run that has per-layer values; each
    column is a bucket of steps holding its maximum, so spikes stay visible.
    """

    height: ClassVar[int] = 440
    below: ClassVar[bool] = True

    def layout(self) -> tuple[go.Figure, list[tuple[int, int] | None]]:
        figure = new_figure(
            2, 1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45]
        )
        return figure, [(1, 1)]

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = super().draw(runs, view)
        quantity = self.rows[0][0]
        run = next((r for r in runs if r.layers(quantity)), None)
        if run is None:
            figure.add_annotation(
                text=f"no per-layer {quantity} logged",
                xref="x2 domain",
                yref="y2 domain",
                x=0.5,
                y=0.5,
                showarrow=False,
            )
            return figure
        layers = run.layers(quantity)
        steps, matrix = layer_matrix(
            [run.series(quantity, name) for name in layers], view
        )
        log = self.log_y_for(view) and bool(np.all(matrix[np.isfinite(matrix)] > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(matrix) if log else matrix
        figure.add_trace(
            go.Heatmap(
                x=steps,
                y=layers,
                z=z,
                colorscale="Viridis",
                colorbar={
                    "title": {"text": "log10" if log else ""},
                    "len": 0.45,
                    "y": 0.2,
                },
                name=run.name,
                hovertemplate="step %{x}, %{y}: %{z:.3g}<extra>"
                + run.name
                + "</extra>",
            ),
            row=2,
            col=1,
        )
        set_axes(figure, view, False, (2, 1), y_title=f"layer ({run.name})")
        figure.update_yaxes(type="category", row=2, col=1)
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The lines above a layer x step heat map (each bucket's maximum)."""
        top, bottom = cell.subplots(2, 1, sharex=True, height_ratios=[1.2, 1])
        subtitle(top, newest_text(self._plot_rows([top], run, view)))
        quantity = self.rows[0][0]
        layers = run.layers(quantity)
        step_axis(bottom, view)
        if not layers:
            note(bottom, f"no per-layer {quantity} logged")
            return
        steps, matrix = layer_matrix(
            [run.series(quantity, name) for name in layers], view
        )
        # Buckets without a tracked step (a sparse schedule) would be blank stripes.
        tracked = np.isfinite(matrix).any(axis=0)
        steps, matrix = steps[tracked], matrix[:, tracked]
        finite = matrix[np.isfinite(matrix)]
        log = self.log_y_for(view) and bool(np.all(finite > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(matrix) if log else matrix
        heatmap(
            cell, bottom, steps, layers, z, "log10" if log else self.label(quantity)
        )
