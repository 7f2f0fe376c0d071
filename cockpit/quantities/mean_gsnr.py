"""``mean_gsnr``: the mean gradient signal-to-noise ratio."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
from cockpit.schedules import Schedule
from cockpit.stats.signal_to_noise import mean_gsnr


class MeanGSNR(Quantity):
    """Mean GSNR (Liu et al. 2020), total and per parameter.

    Args:
        schedule: When it is due.
        eps: Added to each element's variance (default 1e-5, QUANTITIES.md).

    """

    name = "mean_gsnr"
    needs_per_sample = True
    needs_sum_sq = True

    def __init__(self, schedule: Schedule | int = 1, eps: float = 1e-5):
        super().__init__(schedule)
        self.eps = eps

    def compute(self, ctx: StepContext) -> dict:
        n = ctx.batch_size
        return ctx.per_layer(lambda s, _: mean_gsnr(s.grad, s.sum_sq, n, self.eps))
