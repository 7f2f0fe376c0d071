"""``grad_hist_1d``: histogram of all per-sample gradient elements."""

from __future__ import annotations

import torch

from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext
from cockpit.schedules import Schedule
from cockpit.stats.histograms import histogram_1d, safe_range


def bin_edges(low: torch.Tensor, high: torch.Tensor, bins: int) -> torch.Tensor:
    """``[bins + 1]`` equally spaced edges from ``low`` to exactly ``high``."""
    steps = torch.arange(bins, device=low.device, dtype=low.dtype) / bins
    return torch.cat([low + (high - low) * steps, high.reshape(1)])


class GradHist1d(Quantity):
    """Histogram of the ``N x D`` values ``g_{n,j}`` over the whole network.

    The edges span the exact minimum and maximum of all elements. The counts are
    estimated from a uniform random sample of the elements (the Cockpit's
    ``hist_samples``, default 2**20; the sample size is logged), each sampled element
    standing for ``N D_l / K_l`` elements of its layer. ``hist_samples=0`` counts every
    element exactly, which materializes all per-sample gradients of a layer and costs
    about as much as the backward pass itself on a CNN.

    Args:
        schedule: When it is due.
        bins: Number of equal-width bins.

    """

    name = "grad_hist_1d"
    needs_per_sample = True
    needs_histogram = True

    def __init__(self, schedule: Schedule | int = 1, bins: int = 64):
        super().__init__(schedule)
        self.bins = bins

    def compute(self, ctx: StepContext) -> dict:
        total = ctx.stats[TOTAL]
        low, high = safe_range(total.low, total.high)  # for the edges
        groups = [(s.hist_values, s.hist_weight) for s in ctx.layers.values()]
        return {
            "edges": bin_edges(low, high, self.bins),
            "counts": histogram_1d(groups, total.low, total.high, self.bins),
            "min": total.low,
            "max": total.high,
            "sample_size": sum(values.numel() for values, _ in groups),
            "total": ctx.batch_size * total.grad.numel(),
        }
