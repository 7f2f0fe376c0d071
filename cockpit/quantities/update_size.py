"""``update_size``: the length of the step the optimizer actually took."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext, StepTaken


class UpdateSize(Quantity):
    """``||theta_{t+1} - theta_t||_2``, total and per parameter, for any optimizer."""

    name = "update_size"
    needs_step = True

    def after_step(self, ctx: StepContext, taken: StepTaken) -> dict:
        per_layer = {name: sq.sqrt() for name, sq in taken.sq_norms.items()}
        return {TOTAL: taken.length, "per_layer": per_layer}
