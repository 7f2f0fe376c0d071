"""The norm of the parameters over steps, total and per layer."""

from __future__ import annotations

from cockpit.instruments._lines import LayerMapInstrument

__all__ = ["ParamNormGauge"]


class ParamNormGauge(LayerMapInstrument):
    """``param_norm``: the total (or selected layer) above a layer x step heat map."""

    id = "param_norm"
    quantities = ("param_norm",)
    rows = (("param_norm",),)
    labels = (("param_norm", "parameter norm"),)
    per_layer = True
    log_y = True
