"""Redrawing the panels: one request per section, sections out of view wait.

The page's panels come in sections (``group-*``: the instrument groups of
:data:`~cockpit.instruments.GROUPS`, and the comparison). Each section is drawn by its
own callback, so the browser draws the first while the server builds the next, and
:class:`FigureCache` draws only the figures whose data or view changed. For new steps
a section out of the browser's view waits (:func:`deferred`): the page lists the
sections in view four times a second, without asking the server.
"""

from __future__ import annotations

import time
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from cockpit.app.compare import compare_figure, quantity_options
from cockpit.app.layout import (
    COMPARE_GRAPH,
    VISIBLE_SECTIONS,
    WHOLE_MODEL,
    figure_keys_id,
    graph_id,
)
from cockpit.app.store import RunStore
from cockpit.app.throttle import Throttle
from cockpit.instruments import GROUPS, REGISTRY, Instrument, RunData, View

__all__ = ["FigureCache", "deferred", "register_redraws", "scene", "view"]

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


def register_redraws(app: Dash, store: RunStore, throttle: Throttle) -> None:
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
        with store.serving(), store.lock:  # the store's lock is re-entrant
            store.open(selected or [])
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
        with store.serving(), store.lock:  # the store's lock is re-entrant
            store.open(selected or [])
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
