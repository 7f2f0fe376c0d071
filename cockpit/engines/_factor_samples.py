"""A group of ``Linear`` factors' extremes and histogram sample (``_linear_factors``).

For a group of ``G`` layers of equal shapes with factors ``delta [G, N, out]`` and
``x [G, N, in]`` (``None`` for biases, whose input factor is one), the per-sample
gradient elements are ``delta[g, n, i] * x[g, n, j]`` (biases: ``delta[g, n, i]``).
Their extremes bound the histograms' range; the sample takes every element of
``m`` drawn parameter positions, never forming the per-sample gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cockpit.engines._sample_request import GroupRow, SampleRequest, draw_positions

if TYPE_CHECKING:
    from cockpit.engines._linear_factors import Factors

__all__ = ["histogram_sample", "outer_product_extremes", "stacked"]


def outer_product_extremes(delta: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
    """``[G]`` min and max over n, i, j of ``delta[g, n, i] * x[g, n, j]``.

    For fixed n the extremes of an outer product are among the four products of the
    two vectors' extremes: O(N (in + out)) per layer. ``amin`` and ``amax`` rather
    than ``aminmax(dim=...)``, which on a CPU takes some ten times as long along a
    dimension (0.69 ms against 0.07 ms for ``[64, 32, 64]``, one thread). Biases
    (``x`` ``None``): the extremes of ``delta``, two reductions.
    """
    if x is None:
        return delta.amin((1, 2)), delta.amax((1, 2))
    d_ends = _ends(delta)  # [G, N, 2]
    corners = (d_ends[:, :, :, None] * _ends(x)[:, :, None, :]).flatten(1)  # [G, 4 N]
    return corners.amin(1), corners.amax(1)


def _ends(factor: Tensor) -> Tensor:
    """``[G, N, 2]``: each sample's smallest and largest entry of ``[G, N, K]``."""
    return torch.stack((factor.amin(2), factor.amax(2)), dim=2)


def histogram_sample(
    stats: list[GroupRow],
    factors: list[Factors],
    delta: Tensor,
    x: Tensor | None,
    request: SampleRequest,
    stacks: dict[str, Tensor],
) -> None:
    """All N per-sample values at each layer's drawn positions, into ``stacks``.

    Layers of one group have the same size, so either all take every position or
    all draw the same number ``m`` of positions, ``[G, m]`` in one call. The samples
    go into ``stacks`` (``hist_values``, ``hist_params``: ``[G, N m]``), and so do
    the drawn positions (``hist_positions``, ``[G, m]``).
    """
    g, n = delta.shape[:2]
    numel = factors[0].param.numel()
    # One layer (each, where the shapes differ): [m], broadcast without a view.
    drawn = draw_positions(request, n, numel, delta.device, None if g == 1 else g)
    # No per-layer detach or flattening: under no_grad, the stack is flattened.
    # The parameters only where a quantity reads their values (grad_hist_2d).
    params = None
    if request.with_param_values:
        params = stacked([f.param for f in factors]).reshape(g, -1)  # [G, D_l]
    if drawn is None:
        # A bias's values are its factor's (a view: nothing writes to them).
        values = delta if x is None else delta[:, :, :, None] * x[:, :, None, :]
    else:
        values = _products_at(delta, x, drawn)
        drawn = drawn.view(g, -1)
        if params is not None:
            params = torch.gather(params, 1, drawn)
        for layer in stats:
            layer.hist_weight = numel / drawn.shape[1]
        stacks["hist_positions"] = drawn
    stacks["hist_values"] = values.reshape(g, -1)
    if params is not None:
        stacks["hist_params"] = params.repeat(1, n)


def stacked(tensors: list[Tensor]) -> Tensor:
    """``[G, ...]``; a view, not a copy, for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def _products_at(delta: Tensor, x: Tensor | None, drawn: Tensor) -> Tensor:
    """``[G, N, m]``: ``delta[g, n, p // in] * x[g, n, p % in]`` at the drawn ``p``.

    Args:
        delta: ``[G, N, out]``.
        x: ``[G, N, in]``, or ``None`` for biases (``delta[g, n, p]``: one gather).
        drawn: ``[G, m]``, each layer's flat positions in its ``[out, in]`` gradient;
            ``[m]`` for a group of one layer.

    The positions broadcast to the gathers' ``[G, N, m]`` index as a view (``[m]``
    as they are, ``[G, m]`` with an axis inserted). Gathers, not ``index_select``,
    which along the last axis is several times slower on a CPU.
    """
    g, n = delta.shape[:2]
    index = (g, n, drawn.shape[-1])
    drawn = drawn if drawn.dim() == 1 else drawn.unsqueeze(1)
    if x is None:
        return torch.gather(delta, 2, drawn.expand(index))
    d_in = x.shape[2]
    values = torch.gather(delta, 2, (drawn // d_in).expand(index))
    return values * torch.gather(x, 2, (drawn % d_in).expand(index))
