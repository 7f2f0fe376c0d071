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


def sample_positions(request: SampleRequest, n: int, numel: int) -> int:
    """How many parameter positions of a layer the histogram sample takes.

    The sample takes all N per-sample values at each of ``m`` parameter positions
    drawn uniformly (with replacement), so every per-sample element has the same
    chance to be in it; only ``m`` random numbers are drawn and the gathers read whole
    columns. The budget (in elements) is split across layers in proportion to their
    size, at least :data:`MIN_LAYER_SAMPLES` elements per layer. Budget 0 (exact)
    takes every position, and so does a share of half the positions or more
    (gathering that many costs more than taking all).
    """
    assert request.hist_budget is not None
    if request.hist_budget == 0:
        return numel
    share = math.ceil(request.hist_budget * numel / request.total_params)
    positions = math.ceil(max(share, MIN_LAYER_SAMPLES) / n)
    return numel if 2 * positions >= numel else positions


def _draw_positions(
    request: SampleRequest, n: int, numel: int, device: torch.device
) -> Tensor | None:
    """``[m]`` uniformly drawn parameter positions, or ``None`` for all of them."""
    m = sample_positions(request, n, numel)
    if m == numel:
        return None
    assert request.generator is not None
    gen = request.generator(device)
    return torch.randint(numel, (m,), generator=gen, device=device)


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
    if request.sum_sq:
        stats.sum_sq = _sum_of_squares(flat)
    if request.keep_for_projection:
        stats.project = flat.__matmul__
    return stats


class ChunkReducer:
    """Reduce per-sample gradients that arrive a chunk of samples at a time.

    Same statistics as :func:`from_per_sample`, but only one ``[chunk, D_l]`` block
    needs to exist at any time: :meth:`add` reduces each block as it comes, and
    :meth:`finish` assembles the :class:`LayerStats`. ``g_n . g`` needs the
    mini-batch gradient up front (``grad``).

    Args:
        n: Batch size N.
        grad: ``[D_l]``, the mini-batch gradient (mean of the per-sample ones).
        param: The parameter.
        request: What to compute.

    """

    def __init__(self, n: int, grad: Tensor, param: Tensor, request: SampleRequest):
        self.n, self.grad, self.param, self.request = n, grad, param, request
        self.direction = request.directions.get(id(param))
        self.hist = request.hist_budget is not None
        self.positions = (
            _draw_positions(request, n, grad.numel(), grad.device)
            if self.hist
            else None
        )
        self.parts: dict[str, list[Tensor]] = {
            "sq": [],
            "dots": [],
            "proj": [],
            "hist": [],
            "extremes": [],
        }
        self.sum_sq: Tensor | None = None

    def add(self, block: Tensor, reused: bool = False) -> None:
        """Reduce ``block`` ``[c, D_l]``, the next c samples' gradients.

        Args:
            block: The per-sample gradients.
            reused: The caller overwrites ``block`` later (copy what is kept).

        """
        parts = self.parts
        parts["sq"].append(torch.linalg.vector_norm(block, dim=1).square())
        parts["dots"].append(block @ self.grad)
        if self.direction is not None:
            parts["proj"].append(block @ self.direction)
        if self.request.sum_sq:
            squares = block.square().sum(0)
            self.sum_sq = squares if self.sum_sq is None else self.sum_sq + squares
        if self.hist:
            parts["extremes"].append(torch.stack(torch.aminmax(block)))
            picked = (
                block
                if self.positions is None
                else block.index_select(1, self.positions)
            )
            if reused and self.positions is None:
                picked = picked.clone()  # indexing above copies already
            parts["hist"].append(picked.reshape(-1))

    def finish(self, project: Callable[[Tensor], Tensor] | None) -> LayerStats:
        """The statistics of all blocks added.

        Args:
            project: ``v [D_l] -> [N]``, ``g_n . v`` for a direction known only
                later (needed if the request keeps projections).

        """
        parts, request = self.parts, self.request
        stats = LayerStats(
            grad=self.grad,
            sq_norms=torch.cat(parts["sq"]),
            dots=torch.cat(parts["dots"]),
        )
        stats.sum_sq = self.sum_sq
        if self.direction is not None:
            stats.projection = torch.cat(parts["proj"])
        if self.hist:
            low_high = torch.stack(parts["extremes"])
            stats.low, stats.high = low_high[:, 0].min(), low_high[:, 1].max()
            stats.hist_values = torch.cat(parts["hist"])
            values = self.param.detach().reshape(-1)
            if self.positions is not None:
                stats.hist_weight = self.grad.numel() / self.positions.numel()
                values = values[self.positions]
            if request.with_param_values:
                stats.hist_params = values.repeat(self.n)
        if request.keep_for_projection:
            stats.project = project
        return stats


def from_chunks(
    per_sample: Callable[[slice], Tensor],
    project: Callable[[Tensor], Tensor],
    n: int,
    chunk: int,
    grad: Tensor,
    param: Tensor,
    request: SampleRequest,
) -> LayerStats:
    """Reduce per-sample gradients that ``per_sample`` produces block by block.

    Args:
        per_sample: ``rows -> [len(rows), D_l]`` per-sample gradients of those samples
            (it may reuse one buffer for every block).
        project: ``v [D_l] -> [N]``, ``g_n . v`` without the blocks (for later use).
        n: Batch size N.
        chunk: Samples per block.
        grad: ``[D_l]``, the mini-batch gradient (mean of the per-sample ones).
        param: The parameter.
        request: What to compute.

    Returns:
        The layer's statistics.
    """
    reducer = ChunkReducer(n, grad, param, request)
    for first in range(0, n, chunk):
        reducer.add(per_sample(slice(first, first + chunk)), reused=True)
    return reducer.finish(project)


def _sum_of_squares(flat: Tensor) -> Tensor:
    """``[D]``: ``sum_n flat[n]^2``, squaring chunks of rows.

    Squaring all of a large ``[N, D]`` at once allocates a copy as large; chunks of
    :data:`CHUNK_ELEMENTS` are cheaper.
    """
    rows = max(1, CHUNK_ELEMENTS // flat.shape[1])
    return sum(chunk.square().sum(0) for chunk in flat.split(rows))


def _sample_per_sample(
    stats: LayerStats, flat: Tensor, param: Tensor, request: SampleRequest
) -> None:
    """Histogram sample and exact extremes of materialized ``[N, D_l]`` gradients."""
    n, numel = flat.shape
    stats.low, stats.high = torch.aminmax(flat)
    values = param.detach().reshape(-1)
    positions = _draw_positions(request, n, numel, flat.device)
    if positions is None:
        stats.hist_values = flat.reshape(-1)
    else:
        stats.hist_values = flat.index_select(1, positions).reshape(-1)
        stats.hist_weight = numel / positions.numel()
        values = values[positions]
    if request.with_param_values:
        stats.hist_params = values.repeat(n)


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
        positions = _draw_positions(request, n, d_out * d_in, delta.device)
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
