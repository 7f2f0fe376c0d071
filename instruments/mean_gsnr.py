"""The mean gradient signal-to-noise ratio over steps."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["MeanGsnrGauge"]


class MeanGsnrGauge(LinesInstrument):
    """``mean_gsnr``, total or per layer."""

    id = "mean_gsnr"
    quantities = ("mean_gsnr",)
    rows = (("mean_gsnr",),)
    labels = (("mean_gsnr", "GSNR"),)
    per_layer = True
    log_y = True
