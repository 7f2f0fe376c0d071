"""Alert markers on any panel: a shaded step range (or a line) per alert.

:meth:`Instrument.figure <cockpit.instruments._base.Instrument.figure>` calls
:func:`mark_alerts` with the alerts that link to the panel, so every instrument gets
them without code of its own. Markers go on the subplots whose x-axis shows steps:
those titled ``step`` or holding a trace whose hover text starts with ``step`` (the
convention of :func:`~cockpit.instruments._figures.add_series`).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from cockpit.diagnosis import Alert

__all__ = ["COLORS", "MARKER_PREFIX", "mark_alerts"]

#: Severity -> marker color.
COLORS = {"info": "#1f77b4", "warning": "#e08a00", "error": "#c62828"}
#: The ``name`` of every marker shape starts with this, then the rule.
MARKER_PREFIX = "alert:"


def _step_axes(figure: go.Figure) -> list[str]:
    """The x-axes (``"x"``, ``"x2"``, ...) that show steps."""
    axes: dict[str, None] = {}
    for trace in figure.data:
        template = getattr(trace, "hovertemplate", None) or ""
        if template.startswith("step") and getattr(trace, "xaxis", None):
            axes[trace.xaxis] = None
    for name in figure.layout:
        if name.startswith("xaxis"):
            title = figure.layout[name].title.text
            if title == "step":
                axes["x" + name[5:]] = None
    return list(axes)


def _y_of(figure: go.Figure, x: str) -> str:
    axis = figure.layout["xaxis" + x[1:]]
    return axis.anchor if axis.anchor and axis.anchor != "free" else "y" + x[1:]


def mark_alerts(figure: go.Figure, alerts: Sequence[Alert]) -> go.Figure:
    """Add a shaded step range (a line for one step) per alert to the step axes.

    Args:
        figure: The panel's figure; changed in place.
        alerts: The alerts that link to this panel.

    Returns:
        ``figure``.

    """
    if not alerts:
        return figure
    for x in _step_axes(figure):
        y = _y_of(figure, x)
        for alert in alerts:
            color = COLORS.get(alert.severity, COLORS["warning"])
            figure.add_shape(
                type="rect" if alert.last_step > alert.first_step else "line",
                name=f"{MARKER_PREFIX}{alert.rule}",
                xref=x,
                yref=f"{y} domain",
                x0=alert.first_step,
                x1=alert.last_step,
                y0=0,
                y1=1,
                fillcolor=color,
                opacity=0.12 if alert.last_step > alert.first_step else 0.8,
                line={
                    "color": color,
                    "width": 1 if alert.last_step > alert.first_step else 2,
                },
                layer="below",
                label={
                    "text": alert.rule.replace("_", " "),
                    "textposition": "top left",
                    "font": {"size": 9, "color": color},
                },
            )
    return figure
