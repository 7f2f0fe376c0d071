"""The scale of the model's input over steps (root mean square and largest element)."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["InputScaleGauge"]


class InputScaleGauge(LinesInstrument):
    """``input_scale``: the inputs' root mean square, with a reference line at 1."""

    id = "input_scale"
    quantities = ("input_scale",)
    rows = (("input_scale",),)
    labels = (("input_scale", "input RMS"),)
    reference = (1.0, "normalized")
    log_y = True
