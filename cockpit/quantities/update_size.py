"""``update_size``: the length of the step the optimizer actually took."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class UpdateSize(Quantity):
    """``||theta_{t+1} - theta_t||_2``, total and per parameter, for any optimizer."""

    name = "update_size"
    step_states = frozenset({"step"})
    shardable = True

    def finalize_step(self, states: StepStates) -> dict:
        return states.layered_rows(states.step_norms, states["step"].names)
