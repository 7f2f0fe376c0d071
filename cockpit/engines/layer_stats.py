"""Reduce one layer's per-sample gradients to the statistics the quantities consume.

Two routes produce the same :class:`LayerStats`:

- :func:`from_per_sample`: from materialized per-sample gradients ``[N, D_l]`` (any
  layer BackPACK's ``BatchGrad`` supports). O(N D_l) work and memory, freed on return.
- :func:`from_linear_factors`: for ``Linear`` layers on ``[N, in]`` inputs, whose
  per-sample gradient is the outer product ``g_n = delta_n x_n^T``. Norms, projections
  and element-wise second moments then are small matrix products and no per-sample
  gradient is ever formed.

All per-sample gradients here are of the per-sample losses ``l_n`` (BackPACK's ``1/N``
of a mean-reduced loss already undone by the caller).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Elements per temporary chunk: small enough that the allocator reuses the memory
#: instead of mapping fresh pages each time (glibc maps blocks above 32 MB afresh),
#: which for tensors of tens of MB costs more than the arithmetic on them.
CHUNK_ELEMENTS = 2**20

#: Fewest histogram samples a layer gets when the budget is split by layer size, so
#: that per-layer 2D histograms of small layers are not empty.
MIN_LAYER_SAMPLES = 1024


@dataclass
class SampleRequest:
    """What the due quantities need from each layer at this step.

    Attributes:
        mean_reduction: The loss averages over samples (scale per-sample gradients by N).
        sum_sq: Compute ``sum_n g_{n,j}^2`` (GSNR, early stopping).
        hist_budget: Histogram sample size for the whole network; ``None``: no
            histogram; ``0``: exact (every element, costly).
        with_param_values: Also collect the parameter value of each sampled element.
        total_params: D, the number of tracked parameters (splits the budget).
        directions: Per parameter, a flat direction ``v`` to project on now
            (``g_n . v``), e.g. the last step taken (alpha).
        keep_for_projection: Keep what is needed to project on a direction known only
            after ``optimizer.step()`` (alpha's start point).
        generator: Random generator for the histogram sample (never the global one:
            tracking must not change the training's random stream).

    """

    mean_reduction: bool
    sum_sq: bool = False
    hist_budget: int | None = None
    with_param_values: bool = False
    total_params: int = 1
    directions: dict[int, Tensor] = field(default_factory=dict)
    keep_for_projection: bool = False
    generator: Callable[[torch.device], torch.Generator] | None = None


@dataclass
class LayerStats:
    """Sufficient statistics of one parameter tensor's per-sample gradients.

    Attributes:
        grad: ``[D_l]``, the mini-batch gradient ``g = (1/N) sum_n g_n``.
        sq_norms: ``[N]``, ``||g_n||^2``.
        dots: ``[N]``, ``g_n . g`` (this layer's g).
        low: ``[]``, smallest per-sample gradient element (with histograms).
        high: ``[]``, largest per-sample gradient element (with histograms).
        sum_sq: ``[D_l]``, ``sum_n g_{n,j}^2``, if requested.
        projection: ``[N]``, ``g_n . v`` for the requested direction v, if any.
        project: ``v [D_l] -> [N]``, ``g_n . v`` for a direction known later.
        hist_values: ``[K]``, uniformly sampled per-sample gradient elements.
        hist_params: ``[K]``, the parameter values at the same positions.
        hist_weight: How many elements each sampled one stands for (``N D_l / K``).

    """

    grad: Tensor
    sq_norms: Tensor
    dots: Tensor
    low: Tensor | None = None
    high: Tensor | None = None
    sum_sq: Tensor | None = None
    projection: Tensor | None = None
    project: Callable[[Tensor], Tensor] | None = None
    hist_values: Tensor | None = None
    hist_params: Tensor | None = None
    hist_weight: float = 1.0


def sample_size(request: SampleRequest, n: int, numel: int) -> int:
    """Histogram samples for a layer with ``n * numel`` per-sample elements.

    The budget is split in proportion to layer size (so the pooled sample is uniform
    up to the recorded weights), with at least :data:`MIN_LAYER_SAMPLES` per layer.
    Budget 0 (exact) takes every element, and so does a share of half the layer's
    elements or more: gathering that many random elements costs more than taking all.
    """
    assert request.hist_budget is not None
    elements = n * numel
    if request.hist_budget == 0:
        return elements
    share = math.ceil(request.hist_budget * numel / request.total_params)
    share = max(share, MIN_LAYER_SAMPLES)
    return elements if 2 * share >= elements else share


def _draw(
    request: SampleRequest,
    n: int,
    shape: tuple[int, ...],
    device: torch.device,
    flat_index: bool = False,
) -> list[Tensor] | None:
    """Uniform sample, with replacement, of the ``[N, *shape]`` per-sample elements.

    Returns:
        ``None`` if the sample is every element; else one ``[K]`` flat index if
        ``flat_index``, or one index per coordinate (sample first): independent
        uniform coordinates are a uniform draw from the grid and spare the integer
        division of flat indices.
    """
    numel = math.prod(shape)
    k = sample_size(request, n, numel)
    if k == n * numel:
        return None
    assert request.generator is not None
    gen = request.generator(device)
    sizes = (n * numel,) if flat_index else (n, *shape)
    return [torch.randint(size, (k,), generator=gen, device=device) for size in sizes]


def from_per_sample(
    per_sample: Tensor, param: Tensor, request: SampleRequest
) -> LayerStats:
    """Reduce materialized per-sample gradients.

    Args:
        per_sample: ``[N, *param.shape]``, gradients of the per-sample losses.
        param: The parameter (for its values in 2D histograms and its identity).
        request: What to compute.

    Returns:
        The layer's statistics.

    """
    n = per_sample.shape[0]
    flat = per_sample.reshape(n, -1)
    grad = flat.mean(0)
    # vector_norm reduces without allocating a squared copy: for a convolution the
    # [N, D_l] tensor is tens of MB, and fresh allocations of that size dominate.
    stats = LayerStats(
        grad=grad,
        sq_norms=torch.linalg.vector_norm(flat, dim=1).square(),
        dots=flat @ grad,
    )
    if id(param) in request.directions:
        stats.projection = flat @ request.directions[id(param)]
    if request.hist_budget is not None:
        _sample_per_sample(stats, flat, param, request)
    if request.keep_for_projection:
        stats.project = flat.__matmul__
        if request.sum_sq:
            stats.sum_sq = flat.square().sum(0)
    elif (
        request.sum_sq
    ):  # the per-sample gradients are ours and used up: square in place
        stats.sum_sq = flat.square_().sum(0)
    return stats


def _sample_per_sample(
    stats: LayerStats, flat: Tensor, param: Tensor, request: SampleRequest
) -> None:
    """Histogram sample and exact extremes of materialized ``[N, D_l]`` gradients."""
    n, numel = flat.shape
    stats.low, stats.high = torch.aminmax(flat)
    values = param.detach().reshape(-1)
    drawn = _draw(request, n, (numel,), flat.device, flat_index=True)
    if drawn is None:
        stats.hist_values = flat.reshape(-1)
        if request.with_param_values:
            stats.hist_params = values.repeat(n)
    else:
        (index,) = drawn
        stats.hist_values = flat.reshape(-1)[index]
        stats.hist_weight = flat.numel() / index.numel()
        if request.with_param_values:
            stats.hist_params = values[index % numel]


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
        weight = param.detach()
        drawn = _draw(request, n, (d_out, d_in), delta.device)
        if drawn is None:
            stats.hist_values = (delta[:, :, None] * x[:, None, :]).reshape(-1)
            if request.with_param_values:
                stats.hist_params = weight.reshape(-1).repeat(n)
        else:
            samples, rows, cols = drawn
            stats.hist_values = delta[samples, rows] * x[samples, cols]
            stats.hist_weight = n * d_out * d_in / samples.numel()
            stats.hist_params = (
                weight[rows, cols] if request.with_param_values else None
            )
    return stats
