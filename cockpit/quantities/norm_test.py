"""``norm_test``: whether the batch is large enough for the gradient noise."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats.gradient_tests import norm_test


class NormTest(Quantity):
    """Norm test (Byrd et al. 2012), total and per parameter; see ``stats``."""

    name = "norm_test"
    states = frozenset({"sample_grads", "sq_norms"})

    def finalize(self, states: StepStates) -> dict:
        values = norm_test(states.rows("sq_norms"), states.sample_grad_sq_norm_rows)
        return states.layered_rows(values)
