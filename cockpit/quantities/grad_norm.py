"""``grad_norm``: the length of the mini-batch gradient."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class GradNorm(Quantity):
    """``||g||_2`` for the whole network and per parameter (mean-loss convention)."""

    name = "grad_norm"
    states = frozenset({"grads"})
    shardable = True

    def finalize(self, states: StepStates) -> dict:
        return states.layered_rows(states.grad_norms, list(states["grads"]))
