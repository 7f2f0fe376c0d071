"""``norm_test``: whether the batch is large enough for the gradient noise."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
from cockpit.stats.gradient_tests import norm_test


class NormTest(Quantity):
    """Norm test (Byrd et al. 2012), total and per parameter; see ``stats``."""

    name = "norm_test"
    needs_per_sample = True

    def compute(self, ctx: StepContext) -> dict:
        return ctx.per_layer(lambda s, g2: norm_test(s.sq_norms, g2))
