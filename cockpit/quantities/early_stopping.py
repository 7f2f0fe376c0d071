"""``early_stopping``: evidence-based criterion, defined for plain SGD only."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.signal_to_noise import early_stopping


class EarlyStopping(Quantity):
    """Mahsereci et al. 2017's criterion, total and per parameter; above 0: stop.

    Args:
        schedule: When it is due.
        eps: Added to each element's variance (default 1e-5).

    """

    name = "early_stopping"
    states = frozenset({"sample_grads", "sq_norms", "sum_sq"})

    def __init__(self, schedule: Schedule | int = 1, eps: float = 1e-5):
        super().__init__(schedule)
        self.eps = eps

    def finalize(self, states: StepStates) -> dict:
        n = states.batch_size
        grads, sum_sq = states.network("sample_grads"), states.network("sum_sq")
        return states.layered(
            lambda name: early_stopping(grads[name], sum_sq[name], n, self.eps)
        )
