"""``distance``: how far the parameters are from where training started."""

from __future__ import annotations

import torch

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext


class Distance(Quantity):
    """``||theta_t - theta_0||_2``, total and per parameter.

    ``theta_0`` are the parameters when the :class:`~cockpit.Cockpit` was created
    (one copy of the parameters is kept for this).
    """

    name = "distance"
    needs_initial_params = True

    def compute(self, ctx: StepContext) -> dict:
        sq = {
            name: ((param.detach() - ctx.initial[name]) ** 2).sum()
            for name, param in ctx.params.items()
        }
        total = torch.stack(list(sq.values())).sum().sqrt()
        return {TOTAL: total, "per_layer": {n: v.sqrt() for n, v in sq.items()}}
