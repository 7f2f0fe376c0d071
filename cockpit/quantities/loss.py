"""``loss``: the mini-batch loss and the sample variance of the per-sample losses."""

from __future__ import annotations

from cockpit.logs.schema import TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class Loss(Quantity):
    """``L = (1/N) sum_n l_n`` and ``Var_n(l_n)`` (unbiased).

    For a sum-reduced loss ``l_n`` is the same per-sample loss and L is still its mean,
    i.e. the user's loss divided by N (QUANTITIES.md's convention).
    """

    name = "loss"
    states = frozenset({"losses"})
    shardable = True

    def finalize(self, states: StepStates) -> dict:
        return {TOTAL: states.loss, "variance": states.loss_variance}
