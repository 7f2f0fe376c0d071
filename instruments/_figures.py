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

from cockpit.instruments._bulk import bulk_limits, padded
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
    "follow_bulk",
    "header",
    "hline",
    "new_figure",
    "placeholder",
    "set_axes",
]

PLACEHOLDER_NAME = "placeholder"
"""``layout.meta`` of a placeholder figure, so callers can tell it apart."""
AVERAGE = "moving average"
"""``meta`` of a moving average's trace: it follows the values, it sets no range."""


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
        _trace(
            shown.steps[keep],
            average,
            name,
            group,
            mode="lines",
            line=line,
            meta=AVERAGE,
        ),
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
    if log_y:
        figure.update_yaxes(tickformat=LOG_TICKS, **where)
    follow_bulk(figure, log_y, cell)


LOG_TICKS = "~s"
"""Tick labels of log axes: SI prefixes on every tick (``2m``, ``5m``, ``10m``).

Without a format plotly labels the ticks between decades with their first digit
alone (a bare ``5`` or ``2``), which reads as a value.
"""


def _y_ref(figure: go.Figure, cell: tuple[int, int] | None) -> str:
    """The y-axis reference (``"y"``, ``"y3"``) of traces in ``cell``."""
    if cell is None:
        return "y"
    name = figure.get_subplot(*cell).yaxis.plotly_name
    return "y" + name.removeprefix("yaxis")


def follow_bulk(
    figure: go.Figure, log_y: bool, cell: tuple[int, int] | None = None
) -> None:
    """Fit a value axis to the bulk of its data and mark the far outliers at its edge.

    Call it once the (sub)plot's traces and reference lines are drawn. Every line
    and point of the cell but the moving averages (which an outlier drags along)
    counts, and its reference lines stay inside the range
    (:func:`cockpit.instruments._bulk.bulk_limits`). Each point outside is drawn
    as a triangle at the edge it lies beyond, in its trace's color, with its value
    in the hover. Without far outliers the axis is left to plotly's autorange.

    Args:
        figure: The figure.
        log_y: Whether the y-axis is logarithmic.
        cell: ``(row, col)`` of a subplot.

    """
    ref = _y_ref(figure, cell)
    traces = [
        t
        for t in figure.data
        if isinstance(t, go.Scatter)
        and (t.yaxis or "y") == ref
        and t.y is not None
        and t.meta != AVERAGE
    ]
    if not traces:
        return
    references = [s.y0 for s in figure.layout.shapes if s.yref == ref and s.y0 == s.y1]
    values = [np.asarray(t.y, dtype=float) for t in traces]
    limits = bulk_limits(np.concatenate(values), log_y)
    if limits is None:
        return
    low = min([limits[0], *references])
    high = max([limits[1], *references])
    bottom, top = padded(low, high, log_y)
    figure.update_yaxes(
        range=[bottom, top], autorange=False, **_cell(*(cell or (None, None)))
    )
    edges = (10**bottom, 10**top) if log_y else (bottom, top)
    for trace, y in zip(traces, values, strict=True):
        if "markers" in (trace.mode or ""):
            _mark_outliers(figure, trace, y, (low, high), edges, cell)


def _opaque(css: str | None) -> str | None:
    """``rgba(r,g,b,a)`` without its transparency: an outlier mark stands out."""
    if css is None or not css.startswith("rgba("):
        return css
    return css.rsplit(",", 1)[0].replace("rgba(", "rgb(") + ")"


def _mark_outliers(
    figure: go.Figure,
    trace: go.Scatter,
    y: np.ndarray,
    limits: tuple[float, float],
    edges: tuple[float, float],
    cell: tuple[int, int] | None,
) -> None:
    """Triangles at the axis edges for the points of ``trace`` outside ``limits``."""
    x = np.asarray(trace.x)
    tint = _opaque(trace.marker.color or trace.line.color)
    for beyond, edge, symbol in (
        (y < limits[0], edges[0], "triangle-down"),
        (y > limits[1], edges[1], "triangle-up"),
    ):
        if not beyond.any():
            continue
        figure.add_trace(
            go.Scatter(
                x=x[beyond],
                y=np.full(int(beyond.sum()), edge),
                customdata=y[beyond],
                mode="markers",
                marker={"symbol": symbol, "size": 9, "color": tint},
                cliponaxis=False,
                name=f"{trace.name} outside the axis",
                legendgroup=trace.legendgroup,
                showlegend=False,
                hovertemplate="step %{x}: %{customdata:.4g} (off the axis)"
                "<extra>" + str(trace.name) + "</extra>",
            ),
            **_cell(*(cell or (None, None))),
        )


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
