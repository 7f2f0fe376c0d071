"""``cabs``: the batch size CABS suggests, defined for plain SGD only."""

from __future__ import annotations

from cockpit.logs.schema import TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.batch_size import cabs


class CABS(Quantity):
    """``lr * (1/N) sum_n ||g_n - g||^2 / L`` (Balles et al. 2017, eq. 22)."""

    name = "cabs"
    states = frozenset({"sample_grads", "sq_norms", "losses", "lr"})

    def finalize(self, states: StepStates) -> dict:
        sq_norms = states.network("sq_norms")[TOTAL]
        g2 = states.sample_grad_sq_norms[TOTAL]
        return {TOTAL: cabs(states["lr"], sq_norms, g2, states.loss)}
