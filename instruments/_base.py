"""The instrument contract: runs and a view in, one plotly figure out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import plotly.graph_objects as go
from cockpit.instruments._data import RunData
from cockpit.instruments._figures import finish, placeholder
from cockpit.instruments._presets import how_to_fill
from cockpit.instruments._view import View

__all__ = ["Instrument", "View"]


class Instrument:
    """Base class of the dashboard's panels.

    Subclasses set the class attributes and implement :meth:`draw`; :meth:`figure`
    adds the placeholder for runs without data and the common styling.

    Attributes:
        id: Registry key and file stem, e.g. ``"alpha"``.
        title: Panel title.
        how_to_read: One sentence on what to look for.
        quantities: The log keys shown; a run with none of them gets a placeholder.
        per_layer: Whether the layer selection applies.
        log_y: Default y scale.
        log_allowed: ``False`` where values can be negative.

    """

    id: ClassVar[str]
    title: ClassVar[str]
    how_to_read: ClassVar[str]
    quantities: ClassVar[tuple[str, ...]]
    per_layer: ClassVar[bool] = False
    log_y: ClassVar[bool] = False
    log_allowed: ClassVar[bool] = True
    height: ClassVar[int] = 340

    def available(self, run: RunData) -> bool:
        """Whether ``run`` logged any quantity this instrument shows."""
        return any(run.has(quantity) for quantity in self.quantities)

    def watched(self, run: RunData) -> tuple[str, ...]:
        """Quantities whose new rows change this instrument's figure for ``run``."""
        return self.quantities

    def missing_text(self, runs: Sequence[RunData]) -> str:
        """The placeholder sentence for ``runs``, which lack this instrument's data.

        A run whose ``meta.json`` names a quantity under ``absent`` (asked for, but
        not defined for this optimizer or model) gets that reason; the others a hint
        how to track it.
        """
        reasons = []
        unasked = []
        for run in runs:
            absent = run.meta.get("absent") or {}
            found = [(q, absent[q]) for q in self.quantities if q in absent]
            if found:
                reasons += [
                    f"{q} is not tracked in {run.name}: {why}." for q, why in found
                ]
            else:
                unasked.append(run.name)
        if unasked or not runs:
            names = ", ".join(unasked) or "the selected runs"
            keys = " / ".join(self.quantities)
            reasons.append(f"No {keys} in {names}. {how_to_fill(self.quantities[0])}")
        return " ".join(reasons)

    def figure(self, runs: Sequence[RunData], view: View) -> go.Figure:
        """The panel's figure for ``runs`` (overlaid in that order) and ``view``.

        Args:
            runs: The selected runs; the position of each gives its color.
            view: The user's selection.

        Returns:
            The figure; a placeholder naming the quantity and the preset that fills
            it if no run has data.

        """
        if not runs:
            return placeholder(self.title, "No run selected.", self.height)
        missing = [run for run in runs if not self.available(run)]
        if len(missing) == len(runs):
            return placeholder(self.title, self.missing_text(missing), self.height)
        figure = self.draw(list(runs), view)
        note = self.missing_text(missing) if missing else None
        return finish(figure, self.height, note)

    def log_y_for(self, view: View) -> bool:
        """Whether this instrument's value axes are logarithmic under ``view``."""
        return view.log_y(self.log_y, self.log_allowed)

    def draw(self, runs: list[RunData], view: View) -> go.Figure:
        """Draw the figure; runs without data add no traces.

        Args:
            runs: The selected runs, in color order.
            view: The user's selection.

        """
        raise NotImplementedError
