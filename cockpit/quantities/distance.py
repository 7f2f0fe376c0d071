"""``distance``: how far the parameters are from where training started."""

from __future__ import annotations

import torch

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class Distance(Quantity):
    """``||theta_t - theta_0||_2``, total and per parameter.

    ``theta_0`` are the parameters when the :class:`~cockpit.Cockpit` was created
    (one copy of the parameters is kept for this).
    """

    name = "distance"
    states = frozenset({"params", "initial"})

    def finalize(self, states: StepStates) -> dict:
        sq = {
            name: ((param.detach() - states["initial"][name]) ** 2).sum()
            for name, param in states["params"].items()
        }
        total = torch.stack(list(sq.values())).sum().sqrt()
        return {TOTAL: total, PER_LAYER: {n: v.sqrt() for n, v in sq.items()}}
