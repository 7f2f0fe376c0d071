"""The diagnosis at the top of the page: per selected run, healthy or its alerts."""

from __future__ import annotations

from dash import html

from cockpit.app.store import RunNameError, RunStore
from cockpit.diagnosis import Alert, headline, is_holding, newest_first
from cockpit.instruments import REGISTRY
from cockpit.instruments._alerts import COLORS

__all__ = ["ALERT_LINK", "alert_summary", "linked_range", "step_range"]

#: The ``type`` of the alert links' pattern-matching ids.
ALERT_LINK = "alert-link"

_ROW = {"margin": "2px 0", "fontSize": "13px"}
_ENDED = "#8a8a8a"


def step_range(alert: Alert) -> tuple[int, int]:
    """The steps a link to ``alert`` shows: its range with a margin of 10% (>= 5)."""
    pad = max(5, (alert.last_step - alert.first_step) // 10)
    return max(0, alert.first_step - pad), alert.last_step + pad


def _alert(alert: Alert, index: int) -> html.Div:
    color = COLORS.get(alert.severity, COLORS["warning"])
    if not alert.ongoing:
        color = _ENDED
    panel = REGISTRY.get(alert.instrument)
    title = panel.title if panel is not None else alert.instrument
    layers = f" [{', '.join(alert.layers)}]" if alert.layers else ""
    first, last = step_range(alert)
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
                f"→ {title}, steps {first}-{last}",
                id={"type": ALERT_LINK, "index": f"{index}:{first}:{last}"},
                href=f"#{alert.instrument}-card",
                className="alert-link",
                n_clicks=0,
            ),
        ],
        className=f"alert alert-{alert.severity}"
        + ("" if alert.ongoing else " alert-ended"),
        style=_ROW if alert.ongoing else {**_ROW, "color": _ENDED},
    )


def linked_range(link_id: dict[str, str]) -> tuple[int, int]:
    """The step range an alert link's id carries (see :func:`_alert`)."""
    _, first, last = link_id["index"].split(":")
    return int(first), int(last)


def alert_summary(store: RunStore, selected: list[str] | None) -> list[html.Div]:
    """One block per selected run: its headline, ongoing alerts, then ended ones.

    Ongoing alerts come newest first; alerts that ended (the rule no longer finds
    the condition) are folded under "ended" as history. Each alert links to its
    panel and sets the page's step range to the alert's steps.

    Args:
        store: The runs.
        selected: The selected run names.

    """
    blocks = []
    index = 0
    for name in selected or []:
        try:
            alerts = store.state(name).data.alerts
        except RunNameError:
            continue
        ordered = newest_first(alerts)
        rows = [_alert(alert, index + i) for i, alert in enumerate(ordered)]
        index += len(rows)
        holding = rows[: sum(a.ongoing for a in ordered)]
        ended = rows[len(holding) :]
        healthy = not any(is_holding(a) for a in alerts)
        children: list = [
            html.Div(
                f"{name}: {headline(alerts)}",
                style={"fontWeight": 600, "color": "#2e7d32" if healthy else None},
            ),
            *holding,
        ]
        if ended:
            children.append(
                html.Details(
                    [html.Summary(f"{len(ended)} ended", style=_ROW), *ended],
                    className="ended-alerts",
                )
            )
        blocks.append(
            html.Div(children, className="run-healthy" if healthy else "run-alerts")
        )
    return blocks
