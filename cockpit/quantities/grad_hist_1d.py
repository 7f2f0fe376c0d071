"""``grad_hist_1d``: histogram of all per-sample gradient elements."""

from __future__ import annotations

import functools

import torch

from cockpit._flat_buffers import numels
from cockpit.logs.schema import COUNTS, EDGES, TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.histograms import histogram_1d


def bin_edges(low: torch.Tensor, high: torch.Tensor, bins: int) -> torch.Tensor:
    """``[bins + 1]`` equally spaced edges from ``low`` to exactly ``high``."""
    steps = _fractions(bins, low.dtype, low.device)
    return torch.cat([low + (high - low) * steps, high.reshape(1)])


@functools.cache
def _fractions(bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[bins]``: ``i / bins``, the same at every step: made once per dtype and device.

    Never written to: :func:`bin_edges` only reads it.
    """
    return torch.arange(bins, device=device, dtype=dtype) / bins


class GradHist1d(Quantity):
    """Histogram of the ``N x D`` values ``g_{n,j}`` over the whole network.

    The edges span the exact minimum and maximum of all elements. The counts are
    estimated from a uniform random sample of the elements (the Cockpit's
    ``hist_samples``, default 2**16; the sample size is logged), each sampled element
    standing for ``N D_l / K_l`` elements of its layer. ``hist_samples=0`` counts every
    element exactly, which materializes all per-sample gradients of a layer and costs
    about as much as the backward pass itself on a CNN.

    Args:
        schedule: When it is due.
        bins: Number of equal-width bins.

    """

    name = "grad_hist_1d"
    states = frozenset({"losses", "sample_grads", "low", "high", "hist"})

    def __init__(self, schedule: Schedule | int = 1, bins: int = 64):
        super().__init__(schedule)
        self.bins = bins

    def count(self, states: StepStates) -> dict:
        """Counts of this process's sampled elements on the step's edges."""
        lowest, highest, span = states.grad_extremes
        groups = [(h.values, h.weight) for s in states["hist"].values() for h in s]
        return {
            COUNTS: histogram_1d(groups, lowest, highest, self.bins, span),
            "sample_size": sum([values.numel() for values, _ in groups]),
        }

    def finalize(self, states: StepStates) -> dict:
        lowest, highest, span = states.grad_extremes
        # D from the layers' sizes: no concatenation of the gradients to count them.
        size = sum(numels(states["sample_grads"]))
        return {
            EDGES: bin_edges(*span, self.bins),
            **states.counts(self),
            "min": lowest,
            "max": highest,
            TOTAL: states.batch_size * size,
        }
