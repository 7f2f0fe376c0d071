"""What the dashboard does on each poll and selection, as plain functions.

Each function takes the store and the values of the components it reads, and returns
what the components it writes should show; :func:`register` wires them to Dash. The
tests call them directly.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

import plotly.graph_objects as go
from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from cockpit.app.alerts_summary import ALERT_LINK, alert_summary, linked_range
from cockpit.app.compare import compare_figure, quantity_options
from cockpit.app.layout import (
    COMPARE_GRAPH,
    VISIBLE_SECTIONS,
    WHOLE_MODEL,
    figure_keys_id,
    graph_id,
)
from cockpit.app.run_filter import RunFilter
from cockpit.app.store import RunNameError, RunStore
from cockpit.app.throttle import Throttle
from cockpit.instruments import GROUPS, REGISTRY, Instrument, RunData, View

__all__ = [
    "FigureCache",
    "deferred",
    "layer_options",
    "poll",
    "register",
    "run_options",
    "scene",
    "toggle_pause",
    "view",
]

_MAX_NOTICES = 3
#: The key, in a section's figure keys, of the scene it shows (:func:`scene`).
_SCENE = "scene"
#: Lists the page's sections (``group-*``) that are in the browser's view, and
#: leaves the store alone while that list stays the same.
_SECTIONS_IN_VIEW = """
function (_, shown) {
    const inView = Array.from(document.querySelectorAll('section[id^="group-"]'))
        .filter(el => {
            const box = el.getBoundingClientRect();
            return box.bottom > 0 && box.top < window.innerHeight;
        })
        .map(el => el.id);
    const same = JSON.stringify(inView) === JSON.stringify(shown);
    return same ? window.dash_clientside.no_update : inView;
}
"""


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


def scene(runs: list[RunData], selected: View, *more: Any) -> str:
    """What a section shows apart from the data: the runs, the view and ``more``."""
    return repr(([run.name for run in runs], selected, more))


def deferred(section: str, visible: Any, shown: Any, wanted: str) -> bool:
    """Whether redrawing ``section`` waits until the page scrolls it into view.

    Every new step would redraw all the panels, about 25, most of them out of view,
    and the browser draws them one after the other: the panel a person looks at
    came last. So a section out of view that shows the runs and view asked for
    (:func:`scene`), only older data, keeps it; it redraws what changed when it
    comes into view. A new selection or view redraws every section at once, and so
    does everything before the page has said what is in view.

    Args:
        section: The section's id, e.g. ``"group-gradients"``.
        visible: The ids of the sections in view (the page's
            :data:`~cockpit.app.layout.VISIBLE_SECTIONS` store); ``None``: unknown.
        shown: The scene the section shows (``None``: nothing drawn yet).
        wanted: The scene asked for.

    """
    in_view = not isinstance(visible, list) or section in visible
    return not in_view and shown == wanted


def toggle_pause(clicks: int | None) -> tuple[bool, str]:
    """Odd clicks pause polling: ``(interval disabled, button label)``."""
    paused = bool(clicks) and clicks % 2 == 1
    return paused, "Resume" if paused else "Pause"


def view(
    layer: str | None, first: Any, last: Any, y_scale: str | None, x_scale: str | None
) -> View:
    """The :class:`View` the controls describe; bad inputs fall back to defaults."""

    def step(value: Any) -> int | None:
        try:
            return None if value in (None, "") else int(value)
        except (TypeError, ValueError):
            return None

    scale = y_scale if y_scale in ("auto", "linear", "log") else "auto"
    return View(
        layer=None if layer in (None, "", WHOLE_MODEL) else layer,
        steps=(step(first), step(last)),
        y_scale=scale,  # type: ignore[arg-type]
        x_log=x_scale == "log",
    )


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


class FigureCache:
    """Draws each instrument only when its data or the view changed for this page.

    The key of each figure drawn is sent to the page and comes back with the next
    request, so every open page (and a reload) gets what it lacks.

    Args:
        instruments: Instrument id -> instance, in output order.

    """

    def __init__(self, instruments: dict[str, Instrument]) -> None:
        self.instruments = instruments

    @staticmethod
    def key(instrument: Instrument, runs: list[RunData], selected: View) -> str:
        """What the figure depends on: the view and the versions of its quantities."""
        versions = [
            (
                run.name,
                id(run),
                # A placeholder changes when the quantity arrives, or when meta.json
                # says why it is absent.
                [run.version_of(q) for q in instrument.watched(run)]
                if instrument.available(run)
                else instrument.missing_text([run]),
                [a.steps for a in instrument.alerts([run])],
            )
            for run in runs
        ]
        return repr((selected, versions))

    def figures(
        self, runs: list[RunData], selected: View, drawn: dict[str, str] | None
    ) -> tuple[list[go.Figure | Any], dict[str, str]]:
        """One figure per instrument, ``dash.no_update`` where the page is current.

        Args:
            runs: The selected runs.
            selected: The view.
            drawn: The keys of the figures the page shows (from the last call).

        Returns:
            The figures and the new keys.

        """
        drawn = dict(drawn or {})
        out = []
        for instrument_id, instrument in self.instruments.items():
            key = self.key(instrument, runs, selected)
            if drawn.get(instrument_id) == key:
                out.append(no_update)
                continue
            out.append(instrument.figure(runs, selected))
            drawn[instrument_id] = key
        return out, drawn


def register(app: Dash, store: RunStore) -> None:
    """Wire the callbacks of :func:`~cockpit.app.layout.build_layout` to ``store``.

    Args:
        app: The Dash app.
        store: The runs.

    """
    throttle = Throttle()
    _register_controls(app, store, throttle)
    _register_figures(app, store, throttle)


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


def _register_figures(app: Dash, store: RunStore, throttle: Throttle) -> None:
    """One figure callback per group of panels, and the comparison panel.

    Each group is its own request: the browser draws the first groups while the
    server builds the next (the two run on different cores), instead of waiting for
    one answer with every panel; and a group out of view waits (:func:`deferred`).
    """
    controls = ["layer-select", "step-from", "step-to", "y-scale", "x-scale"]
    app.clientside_callback(
        _SECTIONS_IN_VIEW,
        Output(VISIBLE_SECTIONS, "data"),
        Input("view-interval", "n_intervals"),
        State(VISIBLE_SECTIONS, "data"),
    )
    for group, (_, ids) in GROUPS.items():
        _register_group(app, store, throttle, group, ids, controls)

    keys_id = figure_keys_id("compare")

    @app.callback(
        Output(COMPARE_GRAPH, "figure"),
        Output("compare-quantity", "options"),
        Output(keys_id, "data"),
        Input("data-version", "data"),
        Input(VISIBLE_SECTIONS, "data"),
        Input("run-select", "value"),
        Input("compare-quantity", "value"),
        *[Input(control, "value") for control in controls],
        State(keys_id, "data"),
    )
    def _compare(
        _: Any,
        visible: Any,
        selected: list[str] | None,
        quantity: str | None,
        *values: Any,
    ) -> Any:
        *choices, drawn = values
        store.open(selected or [])
        with store.lock:
            runs = store.runs(selected or [])
            chosen = view(*choices)
            wanted = {
                _SCENE: scene(runs, chosen, quantity),
                "data": repr([(run.name, run.version) for run in runs]),
            }
            drawn = drawn if isinstance(drawn, dict) else {}
            if drawn == wanted or deferred(
                "group-compare", visible, drawn.get(_SCENE), wanted[_SCENE]
            ):
                raise PreventUpdate
            figure = compare_figure(runs, quantity, chosen)
            return figure, quantity_options(runs), wanted


def _register_group(
    app: Dash,
    store: RunStore,
    throttle: Throttle,
    group: str,
    ids: tuple[str, ...],
    controls: list[str],
) -> None:
    cache = FigureCache({key: REGISTRY[key]() for key in ids})
    keys_id = figure_keys_id(group)

    @app.callback(
        [*[Output(graph_id(key), "figure") for key in ids], Output(keys_id, "data")],
        [
            Input("data-version", "data"),
            Input(VISIBLE_SECTIONS, "data"),
            Input("run-select", "value"),
            *[Input(control, "value") for control in controls],
        ],
        [State(keys_id, "data")],
    )
    def _figures(
        version: Any, visible: Any, selected: list[str] | None, *values: Any
    ) -> list[Any]:
        *choices, drawn = values
        store.open(selected or [])
        with store.lock:
            start = time.perf_counter()
            runs = store.runs(selected or [])
            chosen = view(*choices)
            wanted = scene(runs, chosen)
            drawn = drawn if isinstance(drawn, dict) else {}
            if deferred(f"group-{group}", visible, drawn.get(_SCENE), wanted):
                raise PreventUpdate
            figures, keys = cache.figures(runs, chosen, drawn)
            if drawn.get(_SCENE) == wanted:  # new steps: what recurs with each one
                throttle.record(time.perf_counter() - start, _version(version))
        return [*figures, {**keys, _SCENE: wanted}]


def _version(shown: Any) -> Any:
    """The data version a page was told of (``None`` before the first poll)."""
    return shown.get("version") if isinstance(shown, dict) else None
