"""``tic_trace``: the Takeuchi information criterion from traces."""

from __future__ import annotations

import torch

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._diagonal import TicQuantity
from cockpit.quantities._view import StepStates
from cockpit.stats.curvature import tic_trace


class TicTrace(TicQuantity):
    """``tr(M) / (tr(H) + eps)`` (Thomas et al. 2020), total and per parameter.

    ``tr(M) = (1/N) sum_n ||g_n||^2`` (per-sample norms, no element-wise moments),
    ``tr(H)`` from the chosen curvature diagonal
    (shared with ``hess_trace``). The total uses the network's traces.

    Args:
        schedule: When it is due.
        curvature: The curvature diagonal (see ``hess_trace``).
        eps: Added to the trace (default 1e-7, QUANTITIES.md).

    """

    name = "tic_trace"

    def finalize(self, states: StepStates) -> dict:
        traces = states.curvature_traces(self.curvature)
        if traces.names == states.layer_names:  # every layer in one formula call
            h = torch.cat([traces.rows, traces.rows.sum().reshape(1)])
            return states.layered_rows(tic_trace(states.rows("sq_norms"), h, self.eps))
        sq_norms = states.network("sq_norms")
        values = {
            name: tic_trace(sq_norms[name], traces[name], self.eps) for name in traces
        }
        total = tic_trace(sq_norms[TOTAL], traces.rows.sum(), self.eps)
        return {TOTAL: total, PER_LAYER: values}
