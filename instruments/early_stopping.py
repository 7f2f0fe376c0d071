"""The evidence-based early-stopping criterion over steps."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["EarlyStoppingGauge"]


class EarlyStoppingGauge(LinesInstrument):
    """``early_stopping`` with its decision line at 0."""

    id = "early_stopping"
    quantities = ("early_stopping",)
    rows = (("early_stopping",),)
    labels = (("early_stopping", "criterion"),)
    per_layer = True
    log_allowed = False
    reference = (0.0, "stop above 0")
