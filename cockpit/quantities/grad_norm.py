"""``grad_norm``: the length of the mini-batch gradient."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext


class GradNorm(Quantity):
    """``||g||_2`` for the whole network and per parameter (mean-loss convention)."""

    name = "grad_norm"

    def compute(self, ctx: StepContext) -> dict:
        norms = {name: sq.sqrt() for name, sq in ctx.grad_sq_norms.items()}
        return {TOTAL: norms.pop(TOTAL), "per_layer": norms}
