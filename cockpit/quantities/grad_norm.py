"""``grad_norm``: the length of the mini-batch gradient."""

from __future__ import annotations

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class GradNorm(Quantity):
    """``||g||_2`` for the whole network and per parameter (mean-loss convention)."""

    name = "grad_norm"
    states = frozenset({"grads"})

    def finalize(self, states: StepStates) -> dict:
        norms = {name: sq.sqrt() for name, sq in states.grad_sq_norms.items()}
        return {TOTAL: norms.pop(TOTAL), PER_LAYER: norms}
