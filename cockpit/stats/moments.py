"""Mergeable moments of per-sample values: ``(count, mean, M2)`` in float64.

A per-sample vector ``x`` ``[..., N]`` (losses ``l_n``, squared norms ``||g_n||^2``,
projections ``g_n . v``) is summarized on the piece that holds it as

    m = (n, mean, M2),   mean = (1/n) sum_n x_n,   M2 = sum_n (x_n - mean)^2,

two passes over the piece's values in float64 (no ``sum x^2 - n mean^2`` cancellation).
Summaries of P pieces merge exactly by the parallel formula of Chan, Golub and LeVeque
(1979), written for P parts at once:

    n = sum_p n_p,   mean = sum_p n_p mean_p / n,
    M2 = sum_p M2_p + sum_p n_p (mean_p - mean)^2.

Every statistic the quantities read off a per-sample vector follows from ``m``: the sum
``n mean``, the unbiased variance ``M2 / (n - 1)`` and the sum of squares
``M2 + n mean^2``. A summary is three numbers whatever N, so pieces (micro-batches,
ranks) exchange ``[..., 3]`` tensors instead of per-sample vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mean", "merge", "moments", "sum_of_squares", "total", "variance"]


def moments(values: Tensor, population: int | None = None) -> Tensor:
    """``[..., 3]``: ``(n, mean, M2)`` of ``values`` ``[..., M]`` along the last axis.

    Args:
        values: The per-sample values.
        population: N, if ``values`` are those of a uniform random subsample of M of
            N samples (drawn without replacement): the summary then stands for the N
            samples, ``(N, mean, M2 N / M)``, so that its sum ``N mean`` and its sum
            of squares ``M2 + N mean^2`` are ``N / M`` times the subsample's, the
            Horvitz-Thompson estimates, unbiased for the N samples' sums. (Its
            variance ``M2 / (N - 1)`` is then ``N (M - 1) / (M (N - 1))`` times the
            subsample's unbiased variance.)

    An empty piece (``M = 0``) has mean 0 and M2 0, so that it merges as nothing.
    """
    x = values.to(torch.float64)
    m = x.shape[-1]
    if m == 0:
        zeros = x.new_zeros(x.shape[:-1])
        return torch.stack([zeros, zeros, zeros], -1)
    centre = x.mean(-1)
    m2 = (x - centre.unsqueeze(-1)).square().sum(-1)
    if population is not None and population != m:
        m, m2 = population, m2 * (population / m)
    return torch.stack([torch.full_like(centre, m), centre, m2], -1)


def merge(parts: Tensor) -> Tensor:
    """``[..., 3]``: the moments of P pieces' values together, from ``[P, ..., 3]``."""
    n_p, mean_p, m2_p = parts.unbind(-1)
    n = n_p.sum(0)
    centre = (n_p * mean_p).sum(0) / n
    m2 = m2_p.sum(0) + (n_p * (mean_p - centre).square()).sum(0)
    return torch.stack([n, centre, m2], -1)


def mean(m: Tensor) -> Tensor:
    """``[...]``: ``(1/n) sum_n x_n``."""
    return m[..., 1]


def total(m: Tensor) -> Tensor:
    """``[...]``: ``sum_n x_n``."""
    return m[..., 0] * m[..., 1]


def variance(m: Tensor) -> Tensor:
    """``[...]``: the unbiased sample variance ``M2 / (n - 1)``."""
    return m[..., 2] / (m[..., 0] - 1)


def sum_of_squares(m: Tensor) -> Tensor:
    """``[...]``: ``sum_n x_n^2 = M2 + n mean^2``."""
    return m[..., 2] + m[..., 0] * m[..., 1].square()
