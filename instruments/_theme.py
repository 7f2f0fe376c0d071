"""The panels' look: the runs' colors and the plotly template every figure uses."""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["TEMPLATE", "color"]

_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
_AXIS = {
    "automargin": True,
    "ticks": "",
    "title": {"standoff": 15},
    "zerolinewidth": 2,
    "gridcolor": "#ebf0f8",
    "zerolinecolor": "#d8dee9",
    "linecolor": "#d8dee9",
}
_INK = "#2a3f5f"
# What plotly's default template sets for these figures' traces and axes, with this
# module's palette on a white background, built once. plotly's whole template, or any
# template given as a dict, costs about 12 ms per figure to validate and copy (more
# than drawing most panels' data); this one costs about 2 ms.
TEMPLATE = go.layout.Template(
    layout={
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": _INK},
        "colorway": list(_PALETTE),
        "autotypenumbers": "strict",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"align": "left"},
        "annotationdefaults": {"arrowcolor": _INK, "arrowhead": 0, "arrowwidth": 1},
        "shapedefaults": {"line": {"color": _INK}},
    },
    data={
        "heatmap": [{"colorbar": {"outlinewidth": 0, "ticks": ""}}],
        "bar": [
            {
                "marker": {"line": {"color": "#E5ECF6", "width": 0.5}},
                "error_x": {"color": _INK},
                "error_y": {"color": _INK},
            }
        ],
    },
)


def color(index: int, alpha: float = 1.0) -> str:
    """The color of the ``index``-th selected run, as CSS ``rgba``."""
    hex_color = _PALETTE[index % len(_PALETTE)]
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
