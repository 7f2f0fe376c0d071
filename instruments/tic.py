"""The Takeuchi information criterion, diagonal and trace variants, over steps."""

from __future__ import annotations

from cockpit.catalog import ENTRIES
from cockpit.instruments._lines import LinesInstrument

__all__ = ["TicGauge"]


class TicGauge(LinesInstrument):
    """``tic_diag`` and ``tic_trace`` on two stacked axes."""

    id = "tic"
    title = "TIC (gradient noise relative to curvature)"
    how_to_read = ENTRIES["tic_diag"].reading
    quantities = ("tic_diag", "tic_trace")
    rows = (("tic_diag",), ("tic_trace",))
    labels = (("tic_diag", "TIC (diagonal)"), ("tic_trace", "TIC (trace)"))
    per_layer = True
    log_y = True
    height = 420
