"""``hess_trace``: the trace of the loss Hessian (or of its GGN), total and per layer."""

from __future__ import annotations

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._diagonal import DiagonalQuantity
from cockpit.quantities._view import StepStates


class HessTrace(DiagonalQuantity):
    """``tr(H)`` of the mean loss ``L``, per parameter and summed, from a diagonal.

    ``tr(H_l) = sum_j h_j`` over the parameter's entries of the chosen curvature
    diagonal (``curvature``: exact Hessian, exact GGN, or Monte-Carlo GGN, the
    default). The GGN equals the Hessian for a linear model and is its positive
    semi-definite part otherwise. A sum-reduced loss's curvature is divided by N.
    Where the torch.func engine estimates the Hessian diagonal (Hutchinson), the log
    also holds ``probes`` and ``std_error``, the standard error of the total.
    """

    name = "hess_trace"
    states = DiagonalQuantity.states | {"estimates"}

    def finalize(self, states: StepStates) -> dict:
        traces = states.curvature_traces(self.curvature)
        value = {TOTAL: traces.rows.sum(), PER_LAYER: traces}
        estimate = states["estimates"].get(self.curvature)
        if estimate is not None:
            value.update(probes=estimate.probes, std_error=estimate.std_error)
        return value
