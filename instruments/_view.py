"""What the user selected in the dashboard; every instrument draws under one view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Scale", "View"]

Scale = Literal["auto", "linear", "log"]


@dataclass(frozen=True)
class View:
    """What the user selected: applies to every instrument.

    Attributes:
        layer: Parameter name for per-layer quantities; ``None`` for the whole model.
        steps: ``(first, last)`` step shown, inclusive; ``None`` leaves a side open.
        y_scale: ``"auto"`` uses each instrument's default; ``"log"`` is ignored by
            instruments whose values can be negative.
        x_log: Steps on a log axis.
        max_points: Points per trace at most; longer series are downsampled keeping
            the extremes. A panel is about 500 pixels wide, and every point drawn
            is an SVG element the browser redraws on each update: 1,500 per trace
            made redrawing all panels of a 1,000-step run take a second.

    """

    layer: str | None = None
    steps: tuple[int | None, int | None] = (None, None)
    y_scale: Scale = "auto"
    x_log: bool = False
    max_points: int = 600

    def log_y(self, default: bool, allowed: bool = True) -> bool:
        """Whether to use a log y-axis, given an instrument's default."""
        if not allowed:
            return False
        return default if self.y_scale == "auto" else self.y_scale == "log"
