"""Statistics of per-sample gradients that are sums of outer products.

A ``Linear``-like layer applied at T positions per sample (tokens of a sequence) has
the per-sample weight gradient ``g_n = sum_t a_{n,t} b_{n,t}^T`` (``[p, q]``): for
T = 1 a single outer product, whose statistics :func:`from_linear_factors` computes
exactly without any ``g_n``. For T > 1 the norms and projections still need no
``g_n`` (a T x T Gram matrix per sample); element-wise second moments and
histograms do. Where all ``N`` of them fit one chunk (``N p q`` elements at most
:data:`~cockpit.engines.layer_stats.CHUNK_ELEMENTS` on the CPU,
:data:`~cockpit.engines.layer_stats.DEVICE_CHUNK_ELEMENTS` on a GPU, through
:func:`~cockpit.engines.layer_stats.chunk_samples`) they are formed once by one batched product and reduced
like any materialized per-sample gradients (:func:`from_per_sample`): ``g`` is their
mean and later projections cost ``O(N p q)``, not the ``O(N T p q)`` of a product
over the factors. Larger layers get them a chunk of samples at a time
(:class:`ChunkReducer`), so the ``[N, p q]`` per-sample gradients never exist at
once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.engines._linear_factors import from_linear_factors
from cockpit.engines._sample_request import LayerStats, SampleRequest
from cockpit.engines.layer_stats import chunk_samples, from_per_sample

__all__ = ["from_summed_factors"]


def from_summed_factors(
    left: Tensor, right: Tensor, param: Tensor, request: SampleRequest
) -> LayerStats:
    """Statistics of ``g_n = sum_t left_{n,t} right_{n,t}^T``.

    ``g = (1/N) sum_n g_n``; ``g_n . V = sum_t left_{n,t}^T V right_{n,t}``;
    ``||g_n||^2 = sum_{t,s} (left_{n,t} . left_{n,s}) (right_{n,t} . right_{n,s})``,
    O(N T^2 (p + q)) instead of O(N T p q), used when that is smaller and no
    element-wise statistic is due.

    Args:
        left: ``[N, T, p]``.
        right: ``[N, T, q]``.
        param: The ``[p, q]`` parameter.
        request: What to compute.

    Returns:
        The layer's statistics.

    """
    n, length, p = left.shape
    q = right.shape[-1]
    if length == 1:
        return from_linear_factors(left[:, 0], right[:, 0], param, request)
    elementwise = request.sum_sq or request.hist_budget is not None
    if not elementwise and length * (p + q) <= p * q:
        return _from_gram(left, right, param, request)
    chunk = chunk_samples(left.device, n, p * q)
    if chunk == n:
        return from_per_sample(torch.bmm(left.transpose(1, 2), right), param, request)
    reducer = ChunkReducer(n, _mean_gradient(left, right), param, request)
    for first in range(0, n, chunk):
        rows = slice(first, first + chunk)
        reducer.add((left[rows].transpose(1, 2) @ right[rows]).flatten(1))
    return reducer.finish(_projector(left, right))


def _from_gram(
    left: Tensor, right: Tensor, param: Tensor, request: SampleRequest
) -> LayerStats:
    """Norms from the per-sample ``T x T`` Gram matrices, projections from the factors."""
    project = _projector(left, right)
    grad = _mean_gradient(left, right)
    gram = (left @ left.transpose(1, 2)) * (right @ right.transpose(1, 2))
    stats = LayerStats(grad=grad, sq_norms=gram.sum((1, 2)), dots=project(grad))
    if id(param) in request.directions:
        stats.projection = project(request.directions[id(param)])
    if request.keep_for_projection:
        stats.project = project
    return stats


def _mean_gradient(left: Tensor, right: Tensor) -> Tensor:
    """``[p q]``: ``g = (1/N) sum_{n,t} left_{n,t} right_{n,t}^T``, one product."""
    return (left.flatten(0, 1).T @ right.flatten(0, 1)).reshape(-1) / left.shape[0]


def _projector(left: Tensor, right: Tensor) -> Callable[[Tensor], Tensor]:
    """``v [p q] -> [N]``: ``g_n . v = sum_t left_{n,t}^T V right_{n,t}``."""
    p, q = left.shape[-1], right.shape[-1]

    def project(direction: Tensor) -> Tensor:
        return ((left @ direction.view(p, q)) * right).sum((1, 2))

    return project
