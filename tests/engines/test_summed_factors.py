"""Per-sample gradients that are sums of outer products, on each of their routes.

:func:`~cockpit.engines._summed_factors.from_summed_factors` reduces
``g_n = sum_t left_{n,t} right_{n,t}^T`` (Hugging Face ``Conv1D`` on ``[N, T, in]``
tokens) by Gram matrices (norms and projections only), by forming all ``g_n`` at
once (they fit one chunk), or a chunk of samples at a time. Every route is checked in
float64 against per-sample gradients from ``torch.func`` of the layer's own function
``l_n(W) = sum_t left_{n,t}^T W right_{n,t}``.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

from cockpit.engines import layer_stats
from cockpit.engines._sample_request import SampleRequest, draw_positions
from cockpit.engines._summed_factors import from_summed_factors

#: ``(N, T, p, q)``: T (p + q) < p q (the Gram route without element-wise
#: statistics), T (p + q) > p q, and a layer large enough for a sampled histogram.
SHAPES = [(5, 2, 6, 7), (4, 5, 3, 7), (4, 3, 24, 32)]


def _brute_force(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``[N, p q]``: ``d l_n / d W`` by ``vmap(grad(...))`` over samples."""
    p, q = left.shape[-1], right.shape[-1]

    def sample_loss(weight, left_n, right_n):
        return ((left_n @ weight) * right_n).sum()

    weight = torch.zeros(p, q, dtype=left.dtype)
    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(weight, left, right)
    return per_sample.reshape(left.shape[0], -1)


def _request(budget: int | None, sum_sq: bool, numel: int, seed: int) -> SampleRequest:
    gen = torch.Generator().manual_seed(seed)
    return SampleRequest(
        mean_reduction=True,
        sum_sq=sum_sq,
        hist_budget=budget,
        with_param_values=True,
        total_params=4 * numel,
        keep_for_projection=True,
        generator=lambda device: gen,
    )


@pytest.mark.parametrize("chunk", [None, 2], ids=["whole", "chunks-of-2"])
@pytest.mark.parametrize(
    ("budget", "sum_sq"),
    [(None, False), (None, True), (0, False), (1, True)],
    ids=["norms", "sum-sq", "exact-hist", "sampled-hist"],
)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_route_matches_brute_force(monkeypatch, shape, budget, sum_sq, chunk):
    n, length, p, q = shape
    if chunk is not None:  # several chunks of 2 samples, the last one shorter
        monkeypatch.setattr(layer_stats, "CHUNK_ELEMENTS", chunk * p * q)
    gen = torch.Generator().manual_seed(sum(shape))
    left = torch.randn(n, length, p, generator=gen, dtype=torch.float64)
    right = torch.randn(n, length, q, generator=gen, dtype=torch.float64)
    param = torch.randn(p, q, generator=gen, dtype=torch.float64)
    now, later = torch.randn(2, p * q, generator=gen, dtype=torch.float64)
    request = _request(budget, sum_sq, p * q, seed=7)
    request.directions = {id(param): now}

    stats = from_summed_factors(left, right, param, request)

    gn = _brute_force(left, right)
    g = gn.mean(0)
    torch.testing.assert_close(stats.grad, g)
    torch.testing.assert_close(stats.sq_norms, (gn**2).sum(1))
    torch.testing.assert_close(stats.dots, gn @ g)
    torch.testing.assert_close(stats.projection, gn @ now)
    assert stats.project is not None
    torch.testing.assert_close(stats.project(later), gn @ later)
    if sum_sq:
        torch.testing.assert_close(stats.sum_sq, (gn**2).sum(0))
    else:
        assert stats.sum_sq is None
    if budget is None:
        assert stats.hist_values is None and stats.low is None
        return
    torch.testing.assert_close(stats.low, gn.min())
    torch.testing.assert_close(stats.high, gn.max())
    # The same draw from a generator seeded alike: the positions the route took.
    positions = draw_positions(_request(budget, sum_sq, p * q, 7), n, p * q, g.device)
    picked = torch.arange(p * q) if positions is None else positions
    assert (positions is not None) == (budget == 1 and p * q == 24 * 32)
    torch.testing.assert_close(stats.hist_values, gn[:, picked].reshape(-1))
    torch.testing.assert_close(stats.hist_params, param.reshape(-1)[picked].repeat(n))
    assert stats.hist_weight == p * q / picked.numel()


def test_one_position_per_sample_is_an_outer_product():
    gen = torch.Generator().manual_seed(0)
    left = torch.randn(3, 1, 4, generator=gen, dtype=torch.float64)
    right = torch.randn(3, 1, 5, generator=gen, dtype=torch.float64)
    param = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    request = _request(None, True, 20, seed=0)
    stats = from_summed_factors(left, right, param, request)
    gn = _brute_force(left, right)
    torch.testing.assert_close(stats.sq_norms, (gn**2).sum(1))
    torch.testing.assert_close(stats.sum_sq, (gn**2).sum(0))
