"""``grad_hist_2d``: joint histogram of parameter values and per-sample gradients."""

from __future__ import annotations

import torch

from cockpit.engines.layer_stats import LayerStats
from cockpit.quantities._base import Quantity
from cockpit.quantities._context import StepContext
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
    needs_per_sample = True
    needs_histogram = True
    needs_param_values = True

    def __init__(self, schedule: Schedule | int = 1, bins: tuple[int, int] = (32, 32)):
        super().__init__(schedule)
        self.bins = bins

    def _histogram(self, parts: list[LayerStats], theta: torch.Tensor, total: int):
        theta_range = torch.aminmax(theta)
        grad_range = (
            torch.stack([s.low for s in parts]).min(),
            torch.stack([s.high for s in parts]).max(),
        )
        groups = [(s.hist_params, s.hist_values, s.hist_weight) for s in parts]
        return {
            "x_edges": bin_edges(*safe_range(*theta_range), self.bins[0]),
            "y_edges": bin_edges(*safe_range(*grad_range), self.bins[1]),
            "counts": histogram_2d(groups, theta_range, grad_range, self.bins),
            "sample_size": sum(s.hist_values.numel() for s in parts),
            "total": total,
        }

    def compute(self, ctx: StepContext) -> dict:
        n = ctx.batch_size
        params = {name: p.detach().reshape(-1) for name, p in ctx.params.items()}
        per_layer = {
            name: self._histogram([s], params[name], n * params[name].numel())
            for name, s in ctx.layers.items()
        }
        theta = torch.cat(list(params.values()))
        network = self._histogram(list(ctx.layers.values()), theta, n * theta.numel())
        return {**network, "per_layer": per_layer}
