"""``early_stopping``: evidence-based criterion, defined for plain SGD only."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
from cockpit.schedules import Schedule
from cockpit.stats.signal_to_noise import early_stopping


class EarlyStopping(Quantity):
    """Mahsereci et al. 2017's criterion, total and per parameter; above 0: stop.

    Args:
        schedule: When it is due.
        eps: Added to each element's variance (default 1e-5).

    """

    name = "early_stopping"
    needs_per_sample = True
    needs_sum_sq = True

    def __init__(self, schedule: Schedule | int = 1, eps: float = 1e-5):
        super().__init__(schedule)
        self.eps = eps

    def compute(self, ctx: StepContext) -> dict:
        n = ctx.batch_size
        return ctx.per_layer(lambda s, _: early_stopping(s.grad, s.sum_sq, n, self.eps))
