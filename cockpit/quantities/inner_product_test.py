"""``inner_product_test``: how reliable the gradient's direction is for this batch."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.gradient_tests import inner_product_test


class InnerProductTest(Quantity):
    """Inner-product test (Bollapragada et al. 2018), total and per parameter."""

    name = "inner_product_test"
    states = frozenset({"sample_grads", "sq_norms", "dots"})

    def finalize(self, states: StepStates) -> dict:
        g2 = states.sample_grad_sq_norm_rows
        return states.layered_rows(inner_product_test(states.rows("dots"), g2))
