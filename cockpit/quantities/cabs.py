"""``cabs``: the batch size CABS suggests, defined for plain SGD only."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext
from cockpit.stats.batch_size import cabs


class CABS(Quantity):
    """``lr * (1/N) sum_n ||g_n - g||^2 / L`` (Balles et al. 2017, eq. 22)."""

    name = "cabs"
    needs_per_sample = True

    def compute(self, ctx: StepContext) -> dict:
        total = ctx.stats[TOTAL]
        g2 = ctx.stats_grad_sq_norm(TOTAL)
        return {TOTAL: cabs(ctx.plain_sgd_lr, total.sq_norms, g2, ctx.loss)}
