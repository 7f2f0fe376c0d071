"""The comparison view: one quantity of every selected run in one panel.

The instrument panels overlay the selected runs too, but each shows its own group of
quantities and legends that fill up with a sweep's runs. This panel shows one
scalar (any of the runs' log keys, e.g. ``loss`` or ``alpha.mean``; the selected
layer where the quantity has per-layer values) as one moving average per run, the
legend sorted by the newest value, so the best and worst runs of a sweep read off
its ends.
"""

from __future__ import annotations

import plotly.graph_objects as go

from cockpit.instruments import RunData, View
from cockpit.instruments._figures import (
    add_series,
    finish,
    fmt,
    placeholder,
    set_axes,
)

__all__ = ["HEIGHT", "compare_figure", "quantity_options"]

#: Height of the comparison panel, pixels.
HEIGHT = 420


def quantity_options(runs: list[RunData]) -> list[dict[str, str]]:
    """The scalar quantities of the selected runs, sorted by name."""
    names = sorted(
        {q for run in runs for q in run.quantities() if len(run.series(q))}
        | {q for run in runs for q in run.quantities() if run.layers(q)}
    )
    return [{"label": name, "value": name} for name in names]


def compare_figure(runs: list[RunData], quantity: str | None, view: View) -> go.Figure:
    """One moving average per run of ``quantity`` (the view's layer if it has one).

    Args:
        runs: The selected runs, in selection order (it gives their colors).
        quantity: A scalar quantity, e.g. ``"loss"``.
        view: The step range, scales and layer.

    Returns:
        The figure, or a placeholder saying what is missing.

    """
    title = "Compare runs"
    if not runs:
        return placeholder(title, "No run selected.", HEIGHT)
    if not quantity:
        return placeholder(title, "Choose a quantity to compare.", HEIGHT)
    figure = go.Figure()
    newest: list[tuple[float, str]] = []
    missing = []
    for index, run in enumerate(runs):
        layer = view.layer if view.layer in run.layers(quantity) else None
        shown = add_series(
            figure,
            run.series(quantity, layer),
            view,
            name=run.name,
            index=index,
            group=run.name,
        )
        if len(shown):
            newest.append((float(shown.values[-1]), run.name))
        else:
            missing.append(run.name)
    if not newest:
        return placeholder(title, f"No selected run logged {quantity}.", HEIGHT)
    _sort_legend(figure, [name for _, name in sorted(newest)])
    log = view.y_scale == "log"
    set_axes(figure, view, log, y_title=quantity)
    low, high = min(newest), max(newest)
    figure.update_layout(
        title_text=f"<b>{title}: {quantity}</b><br><sup>newest: lowest "
        f"{fmt(low[0])} ({low[1]}), highest {fmt(high[0])} ({high[1]})</sup>",
        legend={"traceorder": "normal"},
    )
    note = f"Not logged by: {', '.join(missing[:5])}" if missing else None
    if note and len(missing) > 5:
        note += f" and {len(missing) - 5} more"
    return finish(figure, HEIGHT, note)


def _sort_legend(figure: go.Figure, order: list[str]) -> None:
    """List the runs in the legend by their newest value, lowest first."""
    rank = {name: position for position, name in enumerate(order)}
    for trace in figure.data:
        trace.legendrank = 1000 + rank.get(str(trace.legendgroup), len(rank))
