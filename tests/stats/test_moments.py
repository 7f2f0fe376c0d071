"""Mergeable moments: pieces merge to the moments of all their values, stably."""

import pytest
import torch

from cockpit.stats import moments


def _pieces(values: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.stack([moments.moments(p) for p in values.split(sizes, -1)])


@pytest.mark.parametrize("sizes", [[7], [3, 4], [1, 0, 5, 1], [2, 2, 2, 1]])
def test_merged_pieces_equal_the_whole(sizes):
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(2, 7, generator=gen, dtype=torch.float64) * 3 + 1
    merged = moments.merge(_pieces(values, sizes))
    torch.testing.assert_close(moments.total(merged), values.sum(-1))
    torch.testing.assert_close(moments.mean(merged), values.mean(-1))
    torch.testing.assert_close(moments.variance(merged), values.var(-1))
    torch.testing.assert_close(moments.sum_of_squares(merged), (values**2).sum(-1))
    assert merged[..., 0].tolist() == [7.0, 7.0]


def test_variance_survives_a_large_offset_where_raw_sums_do_not():
    """Values 1e8 + small noise: sum x^2 - n mean^2 loses the variance in float64."""
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(1000, generator=gen, dtype=torch.float64)
    values = 1e8 + noise
    exact = noise.var()
    merged = moments.merge(_pieces(values, [300, 200, 500]))
    torch.testing.assert_close(moments.variance(merged), exact, rtol=1e-6, atol=0)
    n = values.numel()
    raw = ((values**2).sum() - values.sum() ** 2 / n) / (n - 1)
    assert not torch.isclose(raw, exact, rtol=1e-2)


def test_float32_values_are_summarized_in_float64():
    values = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float32)
    summary = moments.moments(values)
    assert summary.dtype == torch.float64
    assert summary.tolist() == [3.0, 7.0 / 3.0, pytest.approx(14.0 / 3.0, rel=1e-15)]
