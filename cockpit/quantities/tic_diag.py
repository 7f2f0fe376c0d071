"""``tic_diag``: the Takeuchi information criterion with diagonal curvature."""

from __future__ import annotations

import torch

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._diagonal import TicQuantity
from cockpit.quantities._view import StepStates
from cockpit.stats.curvature import tic_diag


class TicDiag(TicQuantity):
    """``sum_j M_j / (h_j + eps)`` (Thomas et al. 2020), total and per parameter.

    ``M_j = (1/N) sum_n g_{n,j}^2`` from the per-sample gradients, ``h`` the chosen
    curvature diagonal (shared with ``hess_trace`` at the same step). The total is the
    sum of the per-parameter values.

    Args:
        schedule: When it is due.
        curvature: The curvature diagonal (see ``hess_trace``).
        eps: Added to each ``h_j`` (default 1e-7, QUANTITIES.md).

    """

    name = "tic_diag"
    states = TicQuantity.states | {"sum_sq"}

    def finalize(self, states: StepStates) -> dict:
        diagonal = states.curvature_diagonal(self.curvature)
        n = states.batch_size
        values = {
            name: tic_diag(states["sum_sq"][name], diag, n, self.eps)
            for name, diag in diagonal.items()
        }
        return {TOTAL: torch.stack(list(values.values())).sum(), PER_LAYER: values}
