"""Pace redraws to what the server can afford.

Drawing every panel takes the server a noticeable fraction of a second; if new steps
arrive every second, redrawing on each would keep a core busy on the machine that
trains, and answers would arrive after the next request had already replaced them.
So a page is told about new data at most every :meth:`Throttle.gap` seconds: the poll
interval, or three times the recent redraw time if that is longer.
"""

from __future__ import annotations

import threading

__all__ = ["Throttle"]


class Throttle:
    """Remembers how long redraws take.

    Args:
        interval_s: The poll interval; the gap is never shorter.
        factor: The gap is at least this many redraw times, so redrawing uses at
            most about ``1 / factor`` of one core.

    """

    def __init__(self, interval_s: float = 1.0, factor: float = 3.0) -> None:
        self.interval_s = interval_s
        self.factor = factor
        self._seconds = 0.0
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        """Note the duration of one redraw (smoothed over the last few)."""
        with self._lock:
            self._seconds = (
                seconds if self._seconds == 0 else (0.7 * self._seconds + 0.3 * seconds)
            )

    def gap(self) -> float:
        """Seconds a page should wait between two redraws."""
        with self._lock:
            return max(self.interval_s, self.factor * self._seconds)
