"""The instrument contract: runs and a view in, one plotly figure out.

And for the static report, one run and a view in, a matplotlib drawing out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import plotly.graph_objects as go

from cockpit.catalog import ENTRIES
from cockpit.diagnosis import Alert
from cockpit.instruments._alerts import mark_alerts
from cockpit.instruments._data import RunData
from cockpit.instruments._figures import finish, placeholder
from cockpit.instruments._view import View
from cockpit.presets import how_to_fill

if TYPE_CHECKING:  # matplotlib loads only when a report is drawn
    from matplotlib.figure import SubFigure

__all__ = ["Instrument", "View"]


class Instrument:
    """Base class of the dashboard's panels.

    Subclasses set the class attributes and implement :meth:`draw` (the dashboard's
    plotly figure) and :meth:`draw_report` (the static report's matplotlib cell);
    :meth:`figure` adds the placeholder for runs without data, the markers of the
    diagnosis alerts that link to the panel, and the common styling.
    The dashboard group comes from the quantity catalogue (:mod:`cockpit.catalog`).

    Attributes:
        id: Registry key and file stem, e.g. ``"alpha"``; the instrument of its
            quantities in the catalogue.
        title: Panel title; default the title of the catalogue entry named ``id``.
        how_to_read: One sentence on what to look for; default that entry's reading.
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        entry = ENTRIES.get(vars(cls).get("id", ""))
        if entry is not None:
            cls.title = vars(cls).get("title", entry.title)
            cls.how_to_read = vars(cls).get("how_to_read", entry.reading)

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
        figure = mark_alerts(self.draw(list(runs), view), self.alerts(runs))
        note = self.missing_text(missing) if missing else None
        return finish(figure, self.height, note)

    def alerts(self, runs: Sequence[RunData]) -> list[Alert]:
        """The diagnosis alerts of ``runs`` that link to this panel."""
        return [a for run in runs for a in run.alerts if a.instrument == self.id]

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

    def draw_report(self, cell: SubFigure, run: RunData, view: View) -> None:
        """Draw ``run`` into its cell of the static report; only called with data.

        Args:
            cell: The panel's subfigure; title and caption are drawn around it.
            run: The run, which logged some of :attr:`quantities`.
            view: Step range and scales.

        """
        raise NotImplementedError
