"""Batch size advice: the gradient noise scale and CABS next to the batch size used."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["GradientNoiseScaleGauge"]


class GradientNoiseScaleGauge(LinesInstrument):
    """``gradient_noise_scale`` and ``cabs`` with ``batch_size``, one axis."""

    id = "gradient_noise_scale"
    title = "Batch size advice"
    quantities = ("gradient_noise_scale", "cabs")
    rows = (("gradient_noise_scale", "cabs", "batch_size"),)
    labels = (
        ("gradient_noise_scale", "noise scale"),
        ("cabs", "CABS"),
        ("batch_size", "batch size"),
    )
    per_layer = True
    log_y = True
