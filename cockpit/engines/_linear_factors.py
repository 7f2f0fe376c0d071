"""Statistics of a ``Linear`` layer's per-sample gradients from their two factors.

For ``[N, in]`` inputs the per-sample gradient is the outer product
``g_n = delta_n x_n^T``: norms, projections and element-wise second moments are
small matrix products, and no per-sample gradient is ever formed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cockpit.engines._sample_request import LayerStats, SampleRequest, draw_positions

__all__ = ["from_linear_factors"]


def _outer_product_extremes(delta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max over n, i, j of ``delta[n, i] * x[n, j]`` in O(N (in + out)).

    For fixed n the extremes of an outer product are among the four products of the
    two vectors' extremes.
    """
    d_low, d_high = delta.aminmax(dim=1)
    x_low, x_high = x.aminmax(dim=1)
    corners = torch.stack(
        [d_low * x_low, d_low * x_high, d_high * x_low, d_high * x_high]
    )
    return corners.min(), corners.max()


def from_linear_factors(
    delta: Tensor, x: Tensor, param: Tensor, request: SampleRequest
) -> LayerStats:
    """Statistics of ``g_n = delta_n x_n^T`` without forming any ``g_n``.

    ``||g_n||^2 = ||delta_n||^2 ||x_n||^2``, ``g_n . V = delta_n^T V x_n``,
    ``sum_n g_n^2 = (delta^2)^T (x^2)`` (element-wise squares).

    Args:
        delta: ``[N, out]``, gradients of the per-sample losses w.r.t. the output.
        x: ``[N, in]``, the layer's inputs.
        param: The ``[out, in]`` weight.
        request: What to compute.

    Returns:
        The layer's statistics.

    """
    n, d_out = delta.shape
    d_in = x.shape[1]
    grad = delta.T @ x / n

    def project(direction: Tensor) -> Tensor:
        return ((delta @ direction.view(d_out, d_in)) * x).sum(1)

    stats = LayerStats(
        grad=grad.reshape(-1),
        sq_norms=(delta**2).sum(1) * (x**2).sum(1),
        dots=project(grad),
    )
    if request.sum_sq:
        stats.sum_sq = ((delta**2).T @ x**2).reshape(-1)
    if id(param) in request.directions:
        stats.projection = project(request.directions[id(param)])
    if request.keep_for_projection:
        stats.project = project
    if request.hist_budget is not None:
        stats.low, stats.high = _outer_product_extremes(delta, x)
        weight = param.detach().reshape(-1)
        positions = draw_positions(request, n, d_out * d_in, delta.device)
        if positions is None:
            stats.hist_values = (delta[:, :, None] * x[:, None, :]).reshape(-1)
        else:
            rows, cols = positions // d_in, positions % d_in
            stats.hist_values = (delta[:, rows] * x[:, cols]).reshape(-1)
            stats.hist_weight = d_out * d_in / positions.numel()
            weight = weight[positions]
        if request.with_param_values:
            stats.hist_params = weight.repeat(n)
    return stats
