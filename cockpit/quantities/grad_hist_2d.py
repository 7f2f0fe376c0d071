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

    def _histogram(
        self, states: StepStates, names: list[str], theta: torch.Tensor, total: int
    ) -> dict:
        theta_range = torch.aminmax(theta)
        grad_range = (
            torch.stack([states["low"][name] for name in names]).min(),
            torch.stack([states["high"][name] for name in names]).max(),
        )
        samples = [h for name in names for h in states["hist"][name]]
        groups = [(h.params, h.values, h.weight) for h in samples]
        return {
            X_EDGES: bin_edges(*safe_range(*theta_range), self.bins[0]),
            Y_EDGES: bin_edges(*safe_range(*grad_range), self.bins[1]),
            COUNTS: histogram_2d(groups, theta_range, grad_range, self.bins),
            "sample_size": sum(h.values.numel() for h in samples),
            TOTAL: total,
        }

    def finalize(self, states: StepStates) -> dict:
        n = states.batch_size
        params = {n: p.detach().reshape(-1) for n, p in states["params"].items()}
        names = list(states["hist"])
        per_layer = {
            name: self._histogram(
                states, [name], params[name], n * params[name].numel()
            )
            for name in names
        }
        theta = torch.cat(list(params.values()))
        network = self._histogram(states, names, theta, n * theta.numel())
        return {**network, PER_LAYER: per_layer}
