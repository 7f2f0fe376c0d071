"""``distance``: how far the parameters are from where training started."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class Distance(Quantity):
    """``||theta_t - theta_0||_2``, total and per parameter.

    ``theta_0`` are the parameters when the :class:`~cockpit.Cockpit` was created
    (one copy of the parameters is kept for this; of sharded parameters, FSDP, each
    rank keeps its own shard and the norms add over the ranks).
    """

    name = "distance"
    states = frozenset({"params", "initial"})
    shardable = True

    def finalize(self, states: StepStates) -> dict:
        return states.layered_rows(states.moved_norms, list(states["params"]))
