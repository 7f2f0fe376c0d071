"""``grad_hist_2d``: joint histogram of parameter values and per-sample gradients."""

from __future__ import annotations

import torch

from cockpit.logs.schema import COUNTS, PER_LAYER, TOTAL, X_EDGES, Y_EDGES
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.quantities.grad_hist_1d import bin_edges
from cockpit.schedules import Schedule
from cockpit.stats.histograms import histogram_2d, safe_range


class GradHist2d(Quantity):
    """Histogram of the pairs ``(theta_j, g_{n,j})``, for the network and per layer.

    Rows (x) are parameter values, columns (y) per-sample gradient elements. Ranges
    are exact (all parameters, all per-sample elements); counts come from the same
    uniform sample as ``grad_hist_1d`` (see there for cost and the exact mode).

    Args:
        schedule: When it is due.
        bins: ``(bins for theta, bins for g)``.

    """

    name = "grad_hist_2d"
    states = frozenset({"losses", "params", "low", "high", "hist"})

    def __init__(self, schedule: Schedule | int = 1, bins: tuple[int, int] = (32, 32)):
        super().__init__(schedule)
        self.bins = bins

    def _ranges(self, states: StepStates, names: list[str], theta: torch.Tensor):
        """The exact ``theta`` and ``g`` ranges of the parameters ``names``."""
        grad_range = (
            torch.stack([states["low"][name] for name in names]).min(),
            torch.stack([states["high"][name] for name in names]).max(),
        )
        return torch.aminmax(theta), grad_range

    def _count(self, states: StepStates, names: list[str], theta: torch.Tensor):
        theta_range, grad_range = self._ranges(states, names, theta)
        samples = [h for name in names for h in states["hist"][name]]
        groups = [(h.params, h.values, h.weight) for h in samples]
        return {
            COUNTS: histogram_2d(groups, theta_range, grad_range, self.bins),
            "sample_size": sum(h.values.numel() for h in samples),
        }

    def count(self, states: StepStates) -> dict:
        """Counts of this process's sampled pairs on the step's edges, per layer."""
        params = _flat_params(states)
        names = list(states["hist"])
        per_layer = {name: self._count(states, [name], params[name]) for name in names}
        network = self._count(states, names, torch.cat(list(params.values())))
        return {TOTAL: network, PER_LAYER: per_layer}

    def _histogram(
        self,
        states: StepStates,
        names: list[str],
        theta: torch.Tensor,
        counted: dict,
    ) -> dict:
        theta_range, grad_range = self._ranges(states, names, theta)
        return {
            X_EDGES: bin_edges(*safe_range(*theta_range), self.bins[0]),
            Y_EDGES: bin_edges(*safe_range(*grad_range), self.bins[1]),
            **counted,
            TOTAL: states.batch_size * theta.numel(),
        }

    def finalize(self, states: StepStates) -> dict:
        params = _flat_params(states)
        counted = states.counts(self)
        per_layer = {
            name: self._histogram(states, [name], params[name], layer)
            for name, layer in counted[PER_LAYER].items()
        }
        theta = torch.cat(list(params.values()))
        names = list(counted[PER_LAYER])
        network = self._histogram(states, names, theta, counted[TOTAL])
        return {**network, PER_LAYER: per_layer}


def _flat_params(states: StepStates) -> dict[str, torch.Tensor]:
    return {n: p.detach().reshape(-1) for n, p in states["params"].items()}
