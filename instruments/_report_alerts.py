"""The report's diagnosis section: healthy, or one wrapped paragraph per alert."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from cockpit.diagnosis import headline, is_holding, newest_first
from cockpit.instruments._alerts import COLORS
from cockpit.instruments._data import RunData

if TYPE_CHECKING:
    from matplotlib.figure import SubFigure

__all__ = ["alert_lines", "diagnosis_height", "draw_diagnosis"]

_LINE = 0.22  # inches per text line
_TITLE = 0.45
_WIDTH = 190  # characters per line across the report's width
_GREEN, _RED, _GREY = "#2e7d32", "#c62828", "#8a8a8a"


def alert_lines(run: RunData) -> list[tuple[str, str]]:
    """``(text, color)`` lines of the section: the headline, then newest alerts first.

    Ended alerts are grey: history, not a current problem.
    """
    healthy = not any(is_holding(a) for a in run.alerts)
    lines = [(headline(run.alerts).capitalize() + ".", _GREEN if healthy else _RED)]
    for alert in newest_first(run.alerts):
        layers = f" [{', '.join(alert.layers)}]" if alert.layers else ""
        text = (
            f"{alert.severity.upper()} {alert.rule} ({alert.where()}){layers}: "
            f"{alert.explanation} Try: {alert.suggestion} (panel: {alert.instrument})"
        )
        color = COLORS.get(alert.severity, COLORS["warning"])
        color = color if alert.ongoing else _GREY
        lines += [(line, color) for line in textwrap.wrap(text, _WIDTH)]
    return lines


def diagnosis_height(run: RunData) -> float:
    """Inches the section needs."""
    return _TITLE + _LINE * len(alert_lines(run))


def draw_diagnosis(cell: SubFigure, run: RunData) -> None:
    """Draw the section into ``cell``."""
    cell.suptitle("Diagnosis", x=0.005, ha="left", fontsize=14, color="#2a3f5f")
    lines = alert_lines(run)
    height = diagnosis_height(run)
    for i, (text, color) in enumerate(lines):
        y = 1 - (_TITLE + _LINE * (i + 0.5)) / height
        cell.text(0.01, y, text, ha="left", va="center", fontsize=9, color=color)
