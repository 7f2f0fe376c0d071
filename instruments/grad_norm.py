"""The gradient norm over steps, total and per layer."""

from __future__ import annotations

from cockpit.instruments._lines import LayerMapInstrument

__all__ = ["GradNormGauge"]


class GradNormGauge(LayerMapInstrument):
    """``grad_norm``: the total (or selected layer) above a layer x step heat map."""

    id = "grad_norm"
    quantities = ("grad_norm",)
    rows = (("grad_norm",),)
    labels = (("grad_norm", "gradient norm"),)
    per_layer = True
    log_y = True
