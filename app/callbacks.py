"""What the dashboard does on each poll and selection, as plain functions.

Each function takes the store and the values of the components it reads, and returns
what the components it writes should show; :func:`register` wires them to Dash, and
the panels' redraws (:mod:`cockpit.app.redraw`, whose :class:`FigureCache` and
:func:`view` are re-exported here). The tests call them directly.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from cockpit.app.alerts_summary import ALERT_LINK, alert_summary, linked_range
from cockpit.app.layout import WHOLE_MODEL
from cockpit.app.redraw import FigureCache, register_redraws, view
from cockpit.app.run_filter import RunFilter
from cockpit.app.store import RunNameError, RunStore
from cockpit.app.throttle import Throttle

__all__ = [
    "FigureCache",
    "layer_options",
    "poll",
    "register",
    "run_options",
    "toggle_pause",
    "view",
]

_MAX_NOTICES = 3


def _requested(store: RunStore, search: str | None) -> tuple[list[str], list[str]]:
    """Runs named in the page's query string (``?run=a&run=b``), and refusals."""
    names, refused = [], []
    for name in parse_qs((search or "").lstrip("?")).get("run", []):
        try:
            store.resolve(name)
            names.append(name)
        except RunNameError as err:
            refused.append(str(err))
    return names, refused


def _messages(store: RunStore, refused: list[str]) -> list[html.Div]:
    """One visible line per run that cannot be read or skipped something."""
    lines = [html.Div(text, className="run-error") for text in refused]
    for name in store.names():
        state = store.state(name)
        if state.error:
            lines.append(html.Div(f"{name}: {state.error}", className="run-error"))
        for notice in state.notices[-_MAX_NOTICES:]:
            lines.append(html.Div(f"{name}: {notice}", className="run-notice"))
        if len(state.notices) > _MAX_NOTICES:
            hidden = len(state.notices) - _MAX_NOTICES
            lines.append(
                html.Div(f"{name}: ... and {hidden} more", className="run-notice")
            )
    return lines


def _option(store: RunStore, name: str) -> dict[str, Any]:
    state = store.state(name)
    last = state.data.last_step
    label = f"{name} ({state.status}, step {last})" if last is not None else name
    if last is None and state.status != "unknown":
        label = f"{name} ({state.status})"
    if state.error:
        label = f"⚠ {name} (cannot be read)"
    return {"label": label, "value": name}


def run_options(
    store: RunStore, selected: list[str] | None, text: str | None
) -> tuple[list[dict[str, Any]], str]:
    """The run list: the selected runs, then the others that match the filter.

    Args:
        store: The runs.
        selected: The current selection.
        text: The filter (:class:`~cockpit.app.run_filter.RunFilter`): words of
            the name and ``key=value`` pairs of the config.

    Returns:
        ``(options, count)``: the checklist's options, and a line saying how many
        runs match.

    """
    wanted = RunFilter.parse(text)
    chosen = list(selected or [])
    with store.lock:
        names = store.names()
        matching = [
            name for name in names if wanted.matches(name, store.state(name).data.meta)
        ]
        shown = chosen + [name for name in matching if name not in chosen]
        options = [_option(store, name) for name in shown if name in names]
    count = f"{len(matching)} of {len(names)} runs match" if text else ""
    return options, count


def poll(
    store: RunStore,
    selected: list[str] | None,
    search: str | None,
    shown: dict[str, Any] | None = None,
    gap_s: float = 0.0,
) -> tuple[Any, Any, Any, Any]:
    """Read what the selected runs appended, and tell the page if it should redraw.

    Runs that are not selected are listed from their ``meta.json`` alone; their
    steps are read once they are selected (lazy loading: a sweep of a hundred runs
    costs what the runs shown cost).

    Args:
        store: The runs.
        selected: The current run selection; ``None`` before the first poll.
        search: The page's query string; ``?run=NAME`` preselects runs.
        shown: What the page was last told: ``{"version": ..., "at": seconds}``.
        gap_s: Seconds at least between two redraws of one page (see
            :class:`~cockpit.app.throttle.Throttle`); new data waits meanwhile.

    Returns:
        ``(data version, run selection, messages, status)``; outputs that need not
        change are ``dash.no_update``.

    """
    refused: list[str] = []
    selection: Any = no_update
    if selected is None:
        store.poll(shown=[])
        requested, refused = _requested(store, search)
        selection = requested or store.names()[:1]
    store.poll(shown=selection if selected is None else selected)
    now = time.time()
    shown = shown if isinstance(shown, dict) else {}
    current = shown.get("version") == store.version
    too_soon = now - float(shown.get("at", 0.0)) < gap_s
    if selected is not None and (current or too_soon):
        return no_update, no_update, no_update, no_update
    names = store.names()
    plural = "s" if len(names) != 1 else ""
    status = f"{len(names)} run{plural}, read {time.strftime('%H:%M:%S')}"
    version = {"version": store.version, "at": now}
    return version, selection, _messages(store, refused), status


def toggle_pause(clicks: int | None) -> tuple[bool, str]:
    """Odd clicks pause polling: ``(interval disabled, button label)``."""
    paused = bool(clicks) and clicks % 2 == 1
    return paused, "Resume" if paused else "Pause"


def layer_options(store: RunStore, selected: list[str] | None) -> list[dict[str, str]]:
    """The whole model, then every parameter of the selected runs."""
    names: dict[str, None] = {}
    with store.lock:
        for run in store.runs(selected or []):
            parameters = run.meta.get("parameters")
            names.update(
                dict.fromkeys(parameters if isinstance(parameters, dict) else [])
            )
            names.update(
                dict.fromkeys(run.layers("grad_norm") + run.layers("hess_trace"))
            )
    return [{"label": "whole model", "value": WHOLE_MODEL}] + [
        {"label": name, "value": name} for name in names
    ]


def register(app: Dash, store: RunStore) -> None:
    """Wire the callbacks of :func:`~cockpit.app.layout.build_layout` to ``store``.

    Args:
        app: The Dash app.
        store: The runs.

    """
    throttle = Throttle()
    _register_controls(app, store, throttle)
    register_redraws(app, store, throttle)


def _register_controls(app: Dash, store: RunStore, throttle: Throttle) -> None:
    @app.callback(
        Output("data-version", "data"),
        Output("run-select", "value"),
        Output("run-errors", "children"),
        Output("poll-status", "children"),
        Input("poll-interval", "n_intervals"),
        State("run-select", "value"),
        State("url", "search"),
        State("data-version", "data"),
    )
    def _poll(
        _: int, selected: list[str] | None, search: str | None, shown: Any
    ) -> Any:
        return poll(store, selected, search, shown, throttle.gap())

    @app.callback(
        Output("run-select", "options"),
        Output("run-count", "children"),
        Input("run-filter", "value"),
        Input("data-version", "data"),
        State("run-select", "value"),
    )
    def _run_list(text: str | None, _: Any, selected: list[str] | None) -> Any:
        return run_options(store, selected, text)

    @app.callback(
        Output("poll-interval", "disabled"),
        Output("pause-button", "children"),
        Input("pause-button", "n_clicks"),
    )
    def _pause(clicks: int | None) -> tuple[bool, str]:
        return toggle_pause(clicks)

    @app.callback(
        Output("alerts-summary", "children"),
        Input("run-select", "value"),
        Input("data-version", "data"),
    )
    def _alerts(selected: list[str] | None, _: Any) -> list[html.Div]:
        with store.lock:
            return alert_summary(store, selected)

    @app.callback(
        Output("step-from", "value"),
        Output("step-to", "value"),
        Input({"type": ALERT_LINK, "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def _zoom_to_alert(clicks: list[int | None]) -> tuple[int, int]:
        # A redrawn summary fires this with n_clicks 0: only a real click zooms.
        if not ctx.triggered_id or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        return linked_range(ctx.triggered_id)

    @app.callback(
        Output("layer-select", "options"),
        Input("run-select", "value"),
        Input("data-version", "data"),
    )
    def _layers(selected: list[str] | None, _: int) -> list[dict[str, str]]:
        return layer_options(store, selected)
