"""The mean gradient signal-to-noise ratio over steps."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["MeanGsnrGauge"]


class MeanGsnrGauge(LinesInstrument):
    """``mean_gsnr``, total or per layer."""

    id = "mean_gsnr"
    title = "Gradient signal-to-noise ratio"
    how_to_read = (
        "Higher means the per-sample gradients agree; a collapse means the mini-batch "
        "gradient is mostly noise (a larger GSNR has been linked to better "
        "generalization)."
    )
    quantities = ("mean_gsnr",)
    rows = (("mean_gsnr",),)
    labels = (("mean_gsnr", "GSNR"),)
    per_layer = True
    log_y = True
