"""Shared drawing: raw points plus moving average, headers, axes, placeholders.

Conventions of every panel: steps on the x-axis, raw values as faint points and an
exponential moving average as a line in the run's color, the newest value in the
header, and traces grouped by run in the legend. Run colors and the template are
:mod:`cockpit.instruments._theme`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cockpit.instruments._data import Series
from cockpit.instruments._series import ema, even_indices, extreme_indices
from cockpit.instruments._theme import TEMPLATE, color
from cockpit.instruments._view import View

__all__ = [
    "PLACEHOLDER_NAME",
    "add_series",
    "color",
    "finish",
    "fmt",
    "header",
    "hline",
    "new_figure",
    "placeholder",
    "set_axes",
]

PLACEHOLDER_NAME = "placeholder"
"""``layout.meta`` of a placeholder figure, so callers can tell it apart."""


def fmt(value: float | None) -> str:
    """A number for a header or label: 4 significant digits."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def new_figure(rows: int = 1, cols: int = 1, **subplots: object) -> go.Figure:
    """An empty figure, with subplots if more than one cell is asked for."""
    if rows == 1 and cols == 1:
        return go.Figure()
    return make_subplots(rows=rows, cols=cols, **subplots)


def _cell(row: int | None, col: int | None) -> dict[str, int]:
    return {} if row is None else {"row": row, "col": col or 1}


def _trace(
    steps: np.ndarray, values: np.ndarray, name: str, group: str, **style: object
) -> go.Scatter:
    return go.Scatter(
        x=steps,
        y=values,
        name=name,
        legendgroup=group,
        hovertemplate="step %{x}: %{y:.4g}<extra>" + name + "</extra>",
        **style,
    )


def add_series(
    figure: go.Figure,
    series: Series,
    view: View,
    *,
    name: str,
    index: int,
    group: str,
    cell: tuple[int, int] | None = None,
    dash: str = "solid",
    smooth: bool = True,
    markers: bool = False,
) -> Series:
    """Add one series as faint raw points and its moving average.

    Args:
        figure: The figure to add to.
        series: The values over steps.
        view: Gives the step range and the points budget.
        name: Legend name of the moving average.
        index: The run's position, for its color.
        group: Legend group (the run's name), so a click hides the whole run.
        cell: ``(row, col)`` of a subplot.
        dash: Line style, to tell several quantities of one run apart.
        smooth: ``False`` draws the values as a plain line (for exact values such
            as a learning rate schedule, or sparse ones such as a validation
            accuracy), without points or average.
        markers: With ``smooth=False``, mark each value too.

    Returns:
        The finite part of ``series`` inside the step range.

    """
    shown = series.between(*view.steps).finite()
    if len(shown) == 0:
        return shown
    where = _cell(*(cell or (None, None)))
    line = {"color": color(index), "dash": dash, "width": 2}
    keep = extreme_indices(shown.values, view.max_points)
    steps, values = shown.steps[keep], shown.values[keep]
    if not smooth:
        mode, dots = ("lines+markers", {"size": 5}) if markers else ("lines", None)
        plain = _trace(steps, values, name, group, mode=mode, line=line, marker=dots)
        figure.add_trace(plain, **where)
        return shown
    dots = {"size": 4, "color": color(index, 0.3)}
    raw = _trace(steps, values, name, group, mode="markers", marker=dots)
    figure.add_trace(raw.update(showlegend=False), **where)
    keep = even_indices(len(shown), view.max_points)
    average = ema(shown.values)[keep]
    figure.add_trace(
        _trace(shown.steps[keep], average, name, group, mode="lines", line=line),
        **where,
    )
    return shown


def header(
    title: str, newest: Sequence[tuple[str, Series]], unit: str = "", extra: str = ""
) -> str:
    """The panel title with the newest value of each run.

    Args:
        title: The panel's name.
        newest: ``(label, series)`` pairs; the last point of each is shown.
        unit: Appended to each value, e.g. ``" ms"``.
        extra: More text for the second line.

    """
    parts = [
        f"{label} {fmt(float(s.values[-1]))}{unit} @ {int(s.steps[-1])}"
        for label, s in newest
        if len(s)
    ]
    shown = " · ".join(parts[:3]) + (" · ..." if len(parts) > 3 else "")
    lines = [f"newest: {shown}"] if parts else []
    lines += [extra] if extra else []
    return f"<b>{title}</b>" + "".join(f"<br><sup>{line}</sup>" for line in lines)


def hline(
    figure: go.Figure,
    y: float,
    text: str,
    cell: tuple[int, int] | None = None,
) -> None:
    """A dotted reference line across a (sub)plot, labelled on the right."""
    figure.add_hline(
        y=y,
        line={"dash": "dot", "color": "rgba(80,80,80,0.8)", "width": 1},
        annotation={"text": text, "font": {"size": 10}},
        annotation_position="top right",
        **_cell(*(cell or (None, None))),
    )


def set_axes(
    figure: go.Figure,
    view: View,
    log_y: bool,
    cell: tuple[int, int] | None = None,
    steps: bool = True,
    y_title: str | None = None,
    x_title: bool = True,
) -> None:
    """Axis types and titles of one (sub)plot.

    Args:
        figure: The figure.
        view: Gives the x scale of step axes.
        log_y: Whether the y-axis is logarithmic.
        cell: ``(row, col)`` of a subplot.
        steps: Whether the x-axis shows steps (then it follows ``view.x_log``).
        y_title: Title of the y-axis.
        x_title: Whether to name the step axis (not above another subplot).

    """
    where = _cell(*(cell or (None, None)))
    if steps:
        figure.update_xaxes(
            type="log" if view.x_log else "linear",
            title_text="step" if x_title else None,
            **where,
        )
    figure.update_yaxes(type="log" if log_y else "linear", title_text=y_title, **where)


def finish(figure: go.Figure, height: int, note: str | None = None) -> go.Figure:
    """Common styling; ``note`` (e.g. which runs lack data) goes below the plot."""
    lines = (figure.layout.title.text or "").count("<br>")
    figure.update_layout(
        template=TEMPLATE,
        height=height,
        margin={
            "l": 55,
            "r": 15,
            "t": 50 + 12 * lines,
            "b": 45 if note is None else 70,
        },
        legend={"orientation": "h", "y": -0.18, "font": {"size": 10}},
        title={"font": {"size": 14}, "x": 0.01},
        hovermode="closest",
        uirevision="keep",
    )
    if note:
        figure.add_annotation(
            text=note,
            xref="paper",
            yref="paper",
            x=0,
            y=-0.32,
            showarrow=False,
            font={"size": 10, "color": "#a15c00"},
            xanchor="left",
        )
    return figure


def placeholder(title: str, text: str, height: int) -> go.Figure:
    """A figure with no data that says which quantity is missing and how to fill it."""
    figure = go.Figure()
    figure.add_annotation(
        text=text.replace(". ", ".<br>"),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 13, "color": "#555"},
    )
    figure.update_layout(
        title={"text": f"<b>{title}</b>", "font": {"size": 14}, "x": 0.01},
        template=TEMPLATE,
        height=height,
        margin={"l": 20, "r": 20, "t": 50, "b": 20},
        xaxis={"visible": False},
        yaxis={"visible": False},
        meta=PLACEHOLDER_NAME,
    )
    return figure
