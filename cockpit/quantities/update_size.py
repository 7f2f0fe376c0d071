"""``update_size``: the length of the step the optimizer actually took."""

from __future__ import annotations

from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates


class UpdateSize(Quantity):
    """``||theta_{t+1} - theta_t||_2``, total and per parameter, for any optimizer."""

    name = "update_size"
    step_states = frozenset({"step"})

    def finalize_step(self, states: StepStates) -> dict:
        taken = states["step"]
        per_layer = {name: sq.sqrt() for name, sq in taken.sq_norms.items()}
        return {TOTAL: taken.length, PER_LAYER: per_layer}
