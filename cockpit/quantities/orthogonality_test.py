"""``orthogonality_test``: how much gradient noise is orthogonal to the gradient."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.gradient_tests import orthogonality_test


class OrthogonalityTest(Quantity):
    """Orthogonality test (Bollapragada et al. 2018), total and per parameter."""

    name = "orthogonality_test"
    states = frozenset({"sample_grads", "sq_norms", "dots"})

    def finalize(self, states: StepStates) -> dict:
        values = orthogonality_test(
            states.rows("sq_norms"),
            states.rows("dots"),
            states.sample_grad_sq_norm_rows,
        )
        return states.layered_rows(values)
