"""``orthogonality_test``: how much gradient noise is orthogonal to the gradient."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
from cockpit.stats.gradient_tests import orthogonality_test


class OrthogonalityTest(Quantity):
    """Orthogonality test (Bollapragada et al. 2018), total and per parameter."""

    name = "orthogonality_test"
    needs_per_sample = True

    def compute(self, ctx: StepContext) -> dict:
        return ctx.per_layer(lambda s, g2: orthogonality_test(s.sq_norms, s.dots, g2))
