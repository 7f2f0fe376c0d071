"""Reduce one layer's per-sample gradients to the statistics the quantities consume.

Three routes produce the same :class:`LayerStats` (what to compute is a
:class:`SampleRequest`):

- :func:`from_per_sample`: from materialized per-sample gradients ``[N, D_l]`` (any
  layer BackPACK's ``BatchGrad`` supports). O(N D_l) work and memory, freed on return.
- :class:`ChunkReducer` (:mod:`cockpit.engines._chunk_reducer`): from per-sample
  gradients that arrive a chunk of samples at a time.
- :func:`from_linear_factors` (:mod:`cockpit.engines._linear_factors`): for ``Linear``
  layers on ``[N, in]`` inputs, whose per-sample gradient is the outer product
  ``g_n = delta_n x_n^T``. Norms, projections and element-wise second moments then are
  small matrix products and no per-sample gradient is ever formed.

All per-sample gradients here are of the per-sample losses ``l_n`` (BackPACK's ``1/N``
of a mean-reduced loss already undone by the caller).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.engines._linear_factors import from_linear_factors
from cockpit.engines._sample_request import (
    MIN_LAYER_SAMPLES,
    LayerStats,
    SampleRequest,
    draw_positions,
    sample_positions,
    widen,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "DEVICE_CHUNK_ELEMENTS",
    "MIN_LAYER_SAMPLES",
    "ChunkReducer",
    "LayerStats",
    "SampleRequest",
    "chunk_samples",
    "from_linear_factors",
    "from_per_sample",
    "sample_positions",
    "widen",
]

#: Elements per temporary chunk on the CPU: small enough that the allocator reuses the
#: memory instead of mapping fresh pages each time (glibc maps blocks above 32 MB
#: afresh), which for tensors of tens of MB costs more than the arithmetic on them.
#: Chunks of 2**18 or 2**22 elements took as long or longer on 3c3d's convolutions
#: (``benchmarks/conv_floor.py --chunk-elements``, ``benchmarks/results/convecon/``);
#: the convolution routes now take twice this bound on the CPU, in equal chunks
#: (:data:`cockpit.engines._conv_factors.CPU_CHUNK_SCALE`).
CHUNK_ELEMENTS = 2**20

#: Elements per temporary chunk on other devices (256 MB in float32). A GPU's caching
#: allocator reuses blocks of any size, while every chunk costs the same kernel
#: launches and Python calls (about 20 in the convolution routes, whatever its size),
#: which on a GPU are the step's cost: chunks as large as this memory bound allows.
DEVICE_CHUNK_ELEMENTS = 2**26


def chunk_samples(device: torch.device, n: int, per_sample: int) -> int:
    """Samples per chunk of N when the largest temporary holds ``per_sample`` each.

    Between 1 and N; at most :data:`CHUNK_ELEMENTS` elements per temporary on the
    CPU, :data:`DEVICE_CHUNK_ELEMENTS` elsewhere.
    """
    bound = CHUNK_ELEMENTS if device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, min(n, bound // per_sample))


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


def _sum_of_squares(flat: Tensor) -> Tensor:
    """``[D]``: ``sum_n flat[n]^2``, squaring chunks of rows.

    Squaring all of a large ``[N, D]`` at once allocates a copy as large; chunks
    (:func:`chunk_samples`) are cheaper.
    """
    rows = chunk_samples(flat.device, *flat.shape)
    return sum(chunk.square().sum(0) for chunk in flat.split(rows))


def _sample_per_sample(
    stats: LayerStats, flat: Tensor, param: Tensor, request: SampleRequest
) -> None:
    """Histogram sample and exact extremes of materialized ``[N, D_l]`` gradients."""
    n, numel = flat.shape
    stats.low, stats.high = torch.aminmax(flat)
    values = param.detach().reshape(-1)
    positions = draw_positions(request, n, numel, flat.device)
    if positions is None:
        stats.hist_values = flat.reshape(-1)
    else:
        stats.hist_values = flat.index_select(1, positions).reshape(-1)
        stats.hist_weight = numel / positions.numel()
        values = values[positions]
    if request.with_param_values:
        stats.hist_params = values.repeat(n)
