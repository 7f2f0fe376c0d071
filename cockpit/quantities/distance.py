"""``distance``: how far the parameters are from where training started."""

from __future__ import annotations

import torch

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates, norm_rows


class Distance(Quantity):
    """``||theta_t - theta_0||_2``, total and per parameter.

    ``theta_0`` are the parameters when the :class:`~cockpit.Cockpit` was created
    (one copy of the parameters is kept for this).
    """

    name = "distance"
    states = frozenset({"params", "initial"})

    def finalize(self, states: StepStates) -> dict:
        names, start = list(states["params"]), states["initial"]
        initial = [start[name] for name in names]
        with torch.no_grad():  # the parameters require grad; no graph is needed
            moved = torch._foreach_sub(list(states["params"].values()), initial)
        return states.layered_rows(norm_rows(moved), names)
