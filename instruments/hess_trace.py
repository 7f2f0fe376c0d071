"""The trace of the Hessian over steps, total and per layer."""

from __future__ import annotations

from cockpit.instruments._lines import LayerMapInstrument

__all__ = ["HessTraceGauge"]


class HessTraceGauge(LayerMapInstrument):
    """``hess_trace``: the total (or selected layer) above a layer x step heat map."""

    id = "hess_trace"
    quantities = ("hess_trace",)
    rows = (("hess_trace",),)
    labels = (("hess_trace", "trace"),)
    per_layer = True
