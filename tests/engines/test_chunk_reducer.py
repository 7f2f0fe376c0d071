"""``ChunkReducer``: blocks the caller overwrites give the statistics of kept ones."""

from __future__ import annotations

import pytest
import torch

from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.engines._sample_request import SampleRequest


@pytest.mark.parametrize("positions", [None, torch.tensor([0, 4, 9])])
def test_reused_blocks_give_the_statistics_of_per_sample_gradients(positions):
    """A reused block may be squared in place: nothing read from it changes.

    Each block is overwritten with garbage after ``add`` (as the convolution
    route's chunk buffer is); every statistic must still equal the brute force on
    the per-sample gradients, in float64.
    """
    generator = torch.Generator().manual_seed(0)
    n, dim = 7, 12
    g_n = torch.randn(n, dim, dtype=torch.float64, generator=generator)
    grad = g_n.mean(0)
    direction = torch.randn(dim, dtype=torch.float64, generator=generator)
    param = torch.zeros(dim, dtype=torch.float64)
    request = SampleRequest(
        mean_reduction=True,
        sum_sq=True,
        hist_budget=0,
        total_params=dim,
        directions={id(param): direction},
    )
    reducer = ChunkReducer(n, grad, param, request, positions, mean_of_blocks=True)
    buffer = torch.empty(3, dim, dtype=torch.float64)
    for first in range(0, n, 3):
        block = buffer[: min(3, n - first)]
        block.copy_(g_n[first : first + 3])
        reducer.add(block, reused=True)
        buffer.fill_(float("nan"))
    stats = reducer.finish(None)
    torch.testing.assert_close(stats.grad, grad)
    torch.testing.assert_close(stats.sq_norms, (g_n**2).sum(1))
    torch.testing.assert_close(stats.sum_sq, (g_n**2).sum(0))
    torch.testing.assert_close(stats.dots, g_n @ grad)
    torch.testing.assert_close(stats.projection, g_n @ direction)
    torch.testing.assert_close(stats.low, g_n.min())
    torch.testing.assert_close(stats.high, g_n.max())
    picked = g_n if positions is None else g_n[:, positions]
    torch.testing.assert_close(stats.hist_values, picked.reshape(-1))
