"""The three gradient tests in one panel: nested regions and their history."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from cockpit.instruments._base import Instrument
from cockpit.instruments._data import RunData, Series
from cockpit.instruments._figures import (
    add_series,
    color,
    fmt,
    header,
    hline,
    new_figure,
    set_axes,
)
from cockpit.instruments._report_axes import (
    COLORS,
    legend,
    newest_text,
    plot_series,
    reference,
    set_log_y,
    step_axis,
    subtitle,
)
from cockpit.instruments._view import View

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import SubFigure

__all__ = ["GradientTestsGauge"]

_TESTS = (
    ("norm_test", "norm", "solid"),
    ("inner_product_test", "inner product", "dash"),
    ("orthogonality_test", "orthogonality", "dot"),
)
_MPL_DASH = {"solid": "-", "dash": "--", "dot": ":"}


def _circle(center: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    angle = np.linspace(0, 2 * np.pi, 61)
    return center + radius * np.cos(angle), radius * np.sin(angle)


class GradientTestsGauge(Instrument):
    """``norm_test``, ``inner_product_test`` and ``orthogonality_test``.

    Left, the newest values drawn around the mini-batch gradient (the arrow from 0
    to 1): the norm test as a disk around its tip, the inner-product test as a band
    along it, the orthogonality test as a band across it. Right, their history with
    the line at 1.
    """

    id = "gradient_tests"
    title = "Gradient tests"
    how_to_read = (
        "Each value is the spread of the per-sample gradients relative to the batch "
        "gradient: above 1 the batch is too small to trust the gradient's direction or "
        "length (use a larger batch); far below 1 a smaller batch would do."
    )
    quantities = tuple(key for key, _, _ in _TESTS)
    per_layer = True
    log_y = True
    height = 400

    def _series(self, run: RunData, key: str, view: View) -> Series:
        if view.layer is not None and view.layer in run.layers(key):
            return run.series(key, view.layer)
        return run.series(key)

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        figure = new_figure(1, 2, column_widths=[0.35, 0.65], horizontal_spacing=0.1)
        newest: list[tuple[str, Series]] = []
        for index, run in enumerate(runs):
            latest = {}
            for key, label, dash in _TESTS:
                shown = add_series(
                    figure,
                    self._series(run, key, view),
                    view,
                    name=f"{run.name} {label}",
                    index=index,
                    group=run.name,
                    cell=(1, 2),
                    dash=dash,
                )
                if len(shown):
                    latest[key] = float(shown.values[-1])
                if key == "norm_test":
                    newest.append((run.name, shown))
            self._regions(figure, run.name, index, latest)
        self._gradient_arrow(figure)
        hline(figure, 1.0, "1: batch too small above", (1, 2))
        set_axes(figure, view, self.log_y_for(view), (1, 2), y_title="test value")
        title = self.title + (f" (layer {view.layer})" if view.layer else "")
        figure.update_layout(title_text=header(title + ": norm test", newest))
        return figure

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """The newest test values as regions around the gradient; their history."""
        left, right = cell.subplots(1, 2, width_ratios=[1, 2])
        latest: dict[str, tuple[float, str, str]] = {}
        first = None
        for line_color, (key, label, dash) in zip(COLORS, _TESTS, strict=False):
            layer = view.layer if view.layer in run.layers(key) else None
            shown = plot_series(
                right,
                run.series(key, layer),
                view,
                label=label,
                color=line_color,
                style=_MPL_DASH[dash],
            )
            first = first if first is not None else shown
            if len(shown):
                latest[key] = (float(shown.values[-1]), line_color, _MPL_DASH[dash])
        _report_regions(left, latest)
        reference(right, 1.0, "1: batch too small above")
        right.set_ylabel("test value", fontsize=8)
        set_log_y(right, self.log_y_for(view))
        legend(right)
        step_axis(right, view)
        text = newest_text(first, label="norm test") if first is not None else ""
        subtitle(right, text)

    @staticmethod
    def _regions(
        figure: go.Figure, name: str, index: int, latest: dict[str, float]
    ) -> None:
        """The newest test values as regions around the gradient's tip at (1, 0)."""
        shapes = []
        if "norm_test" in latest:
            shapes.append(("norm", *_circle(1.0, latest["norm_test"]), "solid"))
        if "inner_product_test" in latest:
            r = latest["inner_product_test"]
            shapes.append(
                (
                    "inner product",
                    [1 - r, 1 + r, 1 + r, 1 - r, 1 - r],
                    [-2, -2, 2, 2, -2],
                    "dash",
                )
            )
        if "orthogonality_test" in latest:
            r = latest["orthogonality_test"]
            shapes.append(
                (
                    "orthogonality",
                    [-0.5, 2.5, 2.5, -0.5, -0.5],
                    [-r, -r, r, r, -r],
                    "dot",
                )
            )
        for label, x, y, dash in shapes:
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    fill="toself",
                    fillcolor=color(index, 0.06),
                    line={"color": color(index), "dash": dash, "width": 1},
                    name=f"{name} {label} {fmt(latest[_key(label)])}",
                    legendgroup=name,
                    showlegend=False,
                    hoverinfo="name",
                ),
                row=1,
                col=1,
            )

    @staticmethod
    def _gradient_arrow(figure: go.Figure) -> None:
        figure.add_annotation(
            x=1,
            y=0,
            ax=0,
            ay=0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowwidth=2,
            arrowcolor="#333",
            text="",
        )
        figure.update_xaxes(
            range=[-0.5, 2.5], title_text="along the gradient", row=1, col=1
        )
        figure.update_yaxes(
            range=[-1.5, 1.5], scaleanchor="x", title_text="across", row=1, col=1
        )


def _key(label: str) -> str:
    return next(key for key, name, _ in _TESTS if name == label)


def _report_regions(ax: Axes, latest: dict[str, tuple[float, str, str]]) -> None:
    """Norm test: disk around the gradient's tip; inner product: band along; orth.: across."""
    # Imported here: matplotlib loads only when a report is drawn.
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Circle, FancyArrow, Rectangle

    shapes = {
        "norm_test": lambda r: Circle((1, 0), r),
        "inner_product_test": lambda r: Rectangle((1 - r, -2), 2 * r, 4),
        "orthogonality_test": lambda r: Rectangle((-0.5, -r), 3, 2 * r),
    }
    for key, shape in shapes.items():
        if key in latest:
            r, edge, dash = latest[key]
            patch = shape(r)
            patch.set(ec=edge, fc=to_rgba(edge, 0.08), ls=dash, lw=1.2)
            ax.add_patch(patch)
    ax.add_patch(
        FancyArrow(
            0, 0, 0.92, 0, width=0.02, head_width=0.12, head_length=0.08, color="#333"
        )
    )
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.set_xlabel("along the gradient", fontsize=8)
    ax.set_ylabel("across", fontsize=8)
    ax.set_title(
        "newest, around the batch gradient", loc="left", fontsize=8, color="0.35"
    )
