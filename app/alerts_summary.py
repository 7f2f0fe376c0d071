"""The diagnosis at the top of the page: per selected run, healthy or its alerts."""

from __future__ import annotations

from dash import html

from cockpit.app.store import RunNameError, RunStore
from cockpit.diagnosis import Alert
from cockpit.instruments import REGISTRY
from cockpit.instruments._alerts import COLORS

__all__ = ["alert_summary"]

_ROW = {"margin": "2px 0", "fontSize": "13px"}


def _alert(alert: Alert) -> html.Div:
    color = COLORS.get(alert.severity, COLORS["warning"])
    panel = REGISTRY.get(alert.instrument)
    title = panel.title if panel is not None else alert.instrument
    layers = f" [{', '.join(alert.layers)}]" if alert.layers else ""
    return html.Div(
        [
            html.Span(
                alert.severity.upper(),
                style={
                    "color": "white",
                    "background": color,
                    "padding": "0 4px",
                    "borderRadius": "3px",
                    "fontSize": "11px",
                },
            ),
            html.B(f" {alert.rule.replace('_', ' ')}"),
            html.Span(f" ({alert.where()}){layers}: {alert.explanation} "),
            html.I(f"Try: {alert.suggestion} "),
            html.A(
                f"→ {title}",
                href=f"#{alert.instrument}-card",
                className="alert-link",
            ),
        ],
        className=f"alert alert-{alert.severity}",
        style=_ROW,
    )


def alert_summary(store: RunStore, selected: list[str] | None) -> list[html.Div]:
    """One block per selected run: ``healthy``, or its alerts newest first.

    Args:
        store: The runs.
        selected: The selected run names.

    """
    blocks = []
    for name in selected or []:
        try:
            alerts = store.state(name).data.alerts
        except RunNameError:
            continue
        if not alerts:
            blocks.append(
                html.Div(
                    f"{name}: healthy (no alerts)",
                    className="run-healthy",
                    style={**_ROW, "color": "#2e7d32"},
                )
            )
            continue
        newest = sorted(alerts, key=lambda a: (-a.last_step, -a.first_step))
        blocks.append(
            html.Div(
                [
                    html.Div(
                        f"{name}: {len(alerts)} alert(s)", style={"fontWeight": 600}
                    ),
                    *[_alert(a) for a in newest],
                ],
                className="run-alerts",
            )
        )
    return blocks
