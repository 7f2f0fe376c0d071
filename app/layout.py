"""The dashboard's page: controls on top, then one section per instrument group.

Component ids are namespaced strings (``"alpha-graph"``, ``"run-select"``) so the
callbacks and the browser tests can find them.
"""

from __future__ import annotations

from dash import dcc, html

from cockpit.instruments import GROUPS, REGISTRY

__all__ = [
    "COMPARE_GRAPH",
    "VISIBLE_SECTIONS",
    "WHOLE_MODEL",
    "build_layout",
    "figure_keys_id",
    "graph_id",
]

WHOLE_MODEL = "__model__"
"""Value of the layer selector that shows the whole model's values (layer ``None``)."""
VISIBLE_SECTIONS = "visible-sections"
"""The store of the ids of the page's sections (``group-*``) in the browser's view."""
COMPARE_GRAPH = "compare-graph"
"""The id of the comparison view's graph (``cockpit.app.compare``)."""

_GRID = {
    "display": "grid",
    "gridTemplateColumns": "repeat(auto-fill, minmax(560px, 1fr))",
    "gap": "12px",
}
_CARD = {
    "border": "1px solid #ddd",
    "borderRadius": "6px",
    "padding": "4px 8px 8px",
    "background": "white",
}
_CONTROL = {
    "display": "flex",
    "flexDirection": "column",
    "gap": "2px",
    "minWidth": "150px",
}
_LABEL = {"fontSize": "12px", "color": "#555", "fontWeight": "bold"}


def graph_id(instrument_id: str) -> str:
    """The id of an instrument's graph, e.g. ``"alpha-graph"``."""
    return f"{instrument_id}-graph"


def figure_keys_id(group: str) -> str:
    """The id of the store of what a section's figures show: ``"gradients-figure-keys"``.

    Its data are the keys of :class:`~cockpit.app.redraw.FigureCache` and the
    scene (:func:`~cockpit.app.redraw.scene`); ``group`` is an instrument group
    or ``"compare"``.
    """
    return f"{group}-figure-keys"


def _control(label: str, *children: object) -> html.Div:
    return html.Div([html.Span(label, style=_LABEL), *children], style=_CONTROL)


def _scale_controls() -> list[html.Div]:
    return [
        _control(
            "y scale",
            dcc.RadioItems(
                id="y-scale",
                options=[
                    {"label": "auto", "value": "auto"},
                    {"label": "linear", "value": "linear"},
                    {"label": "log", "value": "log"},
                ],
                value="auto",
                inline=True,
            ),
        ),
        _control(
            "x scale",
            dcc.RadioItems(
                id="x-scale",
                options=[
                    {"label": "linear", "value": "linear"},
                    {"label": "log", "value": "log"},
                ],
                value="linear",
                inline=True,
            ),
        ),
    ]


def _run_list() -> html.Div:
    """The runs: a filter, then a scrolling checklist (selected runs first)."""
    return _control(
        "Runs (overlaid)",
        dcc.Input(
            id="run-filter",
            type="text",
            placeholder="filter: name words, key=value of config",
            debounce=True,
            style={"width": "300px"},
        ),
        html.Span(id="run-count", style={"fontSize": "11px", "color": "#555"}),
        dcc.Checklist(
            id="run-select",
            options=[],
            value=None,
            style={"maxHeight": "160px", "overflowY": "auto", "minWidth": "300px"},
            labelStyle={"display": "block", "whiteSpace": "nowrap"},
        ),
    )


def _compare_section() -> html.Section:
    """One quantity of every selected run in one panel (``cockpit.app.compare``)."""
    return html.Section(
        [
            html.H2("Compare runs", style={"margin": "16px 0 8px"}),
            html.Div(
                [
                    dcc.Dropdown(
                        id="compare-quantity",
                        options=[{"label": "loss", "value": "loss"}],
                        value="loss",
                        clearable=False,
                        style={"width": "320px", "marginBottom": "6px"},
                    ),
                    dcc.Graph(
                        id=COMPARE_GRAPH,
                        config={"displaylogo": False},
                        style={"height": "420px"},
                    ),
                    dcc.Store(id=figure_keys_id("compare"), data={}),
                ],
                style=_CARD,
            ),
        ],
        id="group-compare",
    )


def _controls(interval_ms: int) -> html.Div:
    return html.Div(
        [
            _run_list(),
            _control(
                "Layer",
                dcc.Dropdown(
                    id="layer-select",
                    options=[{"label": "whole model", "value": WHOLE_MODEL}],
                    value=WHOLE_MODEL,
                    clearable=False,
                    style={"width": "220px"},
                ),
            ),
            _control(
                "Steps (from, to)",
                html.Div(
                    [
                        # debounce: redraw on Enter or leaving the field, not per key
                        dcc.Input(
                            id="step-from",
                            type="number",
                            placeholder="first",
                            debounce=True,
                        ),
                        dcc.Input(
                            id="step-to",
                            type="number",
                            placeholder="last",
                            debounce=True,
                        ),
                    ],
                    style={"display": "flex", "gap": "4px"},
                ),
            ),
            *_scale_controls(),
            _control(
                "Live",
                html.Button("Pause", id="pause-button", n_clicks=0),
                html.Span(id="poll-status", style={"fontSize": "11px"}),
            ),
            dcc.Interval(id="poll-interval", interval=interval_ms, n_intervals=0),
            # Not paused with the polls: scrolling must still draw what waited.
            dcc.Interval(id="view-interval", interval=interval_ms, n_intervals=0),
            dcc.Store(id=VISIBLE_SECTIONS, data=None),
            dcc.Store(id="data-version", data={}),
            dcc.Location(id="url", refresh=False),
        ],
        style={"display": "flex", "flexWrap": "wrap", "gap": "24px", "padding": "8px"},
    )


def _card(instrument_id: str) -> html.Div:
    instrument = REGISTRY[instrument_id]
    return html.Div(
        [
            dcc.Graph(
                id=graph_id(instrument_id),
                config={
                    "displaylogo": False,
                    "toImageButtonOptions": {
                        "format": "png",
                        "filename": instrument_id,
                    },
                },
                style={"height": f"{instrument.height}px"},
            ),
            html.P(
                instrument.how_to_read,
                className="how-to-read",
                style={"fontSize": "12px", "color": "#444", "margin": "2px 4px"},
            ),
        ],
        id=f"{instrument_id}-card",
        className="instrument",
        style=_CARD,
    )


def build_layout(logdir: str, interval_ms: int = 250) -> html.Div:
    """The whole page.

    Args:
        logdir: Shown in the header.
        interval_ms: How often the browser asks the server whether there are new
            steps (a cheap request; the panels redraw only when there are).

    """
    sections = [
        html.Section(
            [
                html.H2(title, style={"margin": "16px 0 8px"}),
                html.Div([_card(i) for i in ids], style=_GRID),
                dcc.Store(id=figure_keys_id(group), data={}),
            ],
            id=f"group-{group}",
            className="instrument-group",
        )
        for group, (title, ids) in GROUPS.items()
    ]
    return html.Div(
        [
            html.Div(
                [
                    html.H1("cockpit", style={"margin": "0 12px 0 0"}),
                    html.Span(f"LOGDIR {logdir}", style={"color": "#555"}),
                ],
                style={"display": "flex", "alignItems": "baseline", "padding": "8px"},
            ),
            _controls(interval_ms),
            html.Div(id="run-errors", style={"color": "#b00020", "padding": "0 8px"}),
            html.Div(
                id="alerts-summary",
                style={"padding": "4px 8px", "background": "white", "margin": "4px 0"},
            ),
            _compare_section(),
            *sections,
        ],
        style={
            "fontFamily": "system-ui, sans-serif",
            "background": "#f6f7f9",
            "padding": "8px 16px",
        },
    )
