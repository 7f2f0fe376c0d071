"""``mean_gsnr``: the mean gradient signal-to-noise ratio."""

from __future__ import annotations

from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.signal_to_noise import gsnr


class MeanGSNR(Quantity):
    """Mean GSNR (Liu et al. 2020), total and per parameter.

    Args:
        schedule: When it is due.
        eps: Added to each element's variance (default 1e-5, QUANTITIES.md).

    """

    name = "mean_gsnr"
    states = frozenset({"sample_grads", "sq_norms", "sum_sq"})

    def __init__(self, schedule: Schedule | int = 1, eps: float = 1e-5):
        super().__init__(schedule)
        self.eps = eps

    def finalize(self, states: StepStates) -> dict:
        n, eps = states.batch_size, self.eps
        # The mean over each layer's segment of the network's element-wise ratios.
        means = states.elementwise_means(
            lambda grads, sum_sq, out: gsnr(grads, sum_sq, n, eps, out),
            "sample_grads",
            "sum_sq",
        )
        return states.layered_rows(means)
