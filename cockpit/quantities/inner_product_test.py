"""``inner_product_test``: how reliable the gradient's direction is for this batch."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
from cockpit.stats.gradient_tests import inner_product_test


class InnerProductTest(Quantity):
    """Inner-product test (Bollapragada et al. 2018), total and per parameter."""

    name = "inner_product_test"
    needs_per_sample = True

    def compute(self, ctx: StepContext) -> dict:
        return ctx.per_layer(lambda s, g2: inner_product_test(s.dots, g2))
