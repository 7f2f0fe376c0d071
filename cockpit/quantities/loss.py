"""``loss``: the mini-batch loss and the sample variance of the per-sample losses."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext


class Loss(Quantity):
    """``L = (1/N) sum_n l_n`` and ``Var_n(l_n)`` (unbiased).

    For a sum-reduced loss ``l_n`` is the same per-sample loss and L is still its mean,
    i.e. the user's loss divided by N (QUANTITIES.md's convention).
    """

    name = "loss"

    def compute(self, ctx: StepContext) -> dict:
        return {TOTAL: ctx.loss, "variance": ctx.loss_variance}
