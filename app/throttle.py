"""Pace redraws to what the server can afford.

The page asks "anything new?" often (every :data:`CHECK_S` seconds by default: a
cheap poll that answers ``no_update`` when nothing changed), so a new step
is noticed within a fraction of a second. Drawing the panels is what costs: if new
steps arrived on every check, redrawing on each would keep a core busy on the machine
that trains, and answers would arrive after the next request had already replaced
them. So a page is told about new data at most every :meth:`Throttle.gap` seconds:
``shortest_s``, or ``factor`` times the recent redraw time if that is longer.

A redraw is drawn in pieces (one request per group of panels, see
:mod:`cockpit.app.redraw`); the pieces that draw one data version add up to one
redraw time. Only redraws for new steps count: opening a run or changing the view
draws every panel once, at a cost that does not come again with each step.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["CHECK_S", "Throttle"]

#: Seconds between a page's checks for new steps, by default: a check that finds
#: nothing reads each run's ``meta.json`` and finds no new bytes, and waiting for it
#: was a large part of a new step's way to the browser (at 1 s: half a second on
#: average).
CHECK_S = 0.25


class Throttle:
    """Remembers how long redraws take.

    Args:
        shortest_s: The gap is never shorter: at most ``1 / shortest_s`` redraws a
            second, whatever the server's speed (the browser redraws too).
        factor: The gap is at least this many redraw times, so redrawing uses at
            most about ``1 / factor`` of one core.

    """

    def __init__(self, shortest_s: float = 0.5, factor: float = 3.0) -> None:
        self.shortest_s = shortest_s
        self.factor = factor
        self._seconds = 0.0
        self._redraw: Hashable = None
        self._pending = 0.0
        self._lock = threading.Lock()

    def record(self, seconds: float, redraw: Hashable = None) -> None:
        """Note the duration of one piece of the redraw ``redraw``.

        Pieces with the same ``redraw`` add up; a new ``redraw`` folds the previous
        total into the smoothed redraw time (weight 0.3 for the newest).
        """
        with self._lock:
            if redraw != self._redraw:
                self._fold()
                self._redraw = redraw
            self._pending += seconds

    def _fold(self) -> None:
        if self._pending:
            self._seconds = (
                self._pending
                if self._seconds == 0
                else 0.7 * self._seconds + 0.3 * self._pending
            )
        self._pending = 0.0

    def gap(self) -> float:
        """Seconds a page should wait between two redraws."""
        with self._lock:
            drawn = max(self._seconds, self._pending)
            return max(self.shortest_s, self.factor * drawn)
