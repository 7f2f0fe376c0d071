"""The Takeuchi information criterion, diagonal and trace variants, over steps."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["TicGauge"]


class TicGauge(LinesInstrument):
    """``tic_diag`` and ``tic_trace`` on two stacked axes."""

    id = "tic"
    title = "TIC (gradient noise relative to curvature)"
    how_to_read = (
        "Gradient noise measured against curvature; near a minimum it has been proposed "
        "as an estimate of the generalization gap, so compare runs late in training, "
        "not early."
    )
    quantities = ("tic_diag", "tic_trace")
    rows = (("tic_diag",), ("tic_trace",))
    labels = (("tic_diag", "TIC (diagonal)"), ("tic_trace", "TIC (trace)"))
    per_layer = True
    log_y = True
    height = 420
