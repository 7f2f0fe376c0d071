"""The eigensolvers on explicit symmetric matrices."""

import pytest
import torch

from cockpit.exceptions import ConfigurationError
from cockpit.stats.eigen import lanczos, power_iteration


def symmetric(d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a + a.T + shift * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(3))
def test_lanczos_finds_the_largest_algebraic_eigenvalue(seed):
    """Indefinite matrices: the most negative eigenvalue may be larger in magnitude."""
    a = symmetric(60, seed)
    values = torch.linalg.eigvalsh(a)
    start = torch.randn(60, dtype=torch.float64)
    result = lanczos(lambda v: a @ v, start, tol=1e-12, max_iter=60)
    assert result.converged
    assert result.value == pytest.approx(values[-1].item(), rel=1e-10)
    residual = (a @ result.vector - result.value * result.vector).norm()
    assert residual.item() == pytest.approx(result.residual, abs=1e-8)
    assert result.vector.norm().item() == pytest.approx(1.0)


def test_lanczos_stops_at_an_invariant_subspace():
    """A start vector in a 3-dimensional eigenspace: exact after 3 products."""
    values = torch.tensor([5.0, 2.0, -1.0, 0.5, 0.1], dtype=torch.float64)
    a = torch.diag(values)
    start = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    result = lanczos(lambda v: a @ v, start, tol=0.0, max_iter=50)
    assert result.iterations == 3
    assert result.converged
    assert result.value == pytest.approx(5.0)


def test_power_iteration_on_a_positive_definite_matrix():
    a = symmetric(30, 0, shift=20.0)
    values = torch.linalg.eigvalsh(a)
    assert values[0] > 0
    result = power_iteration(
        lambda v: a @ v, torch.randn(30, dtype=torch.float64), 1e-12, 10_000
    )
    assert result.converged
    assert result.value == pytest.approx(values[-1].item(), rel=1e-6)


def test_cap_reached_is_not_converged():
    a = symmetric(60, 1)
    start = torch.randn(60, dtype=torch.float64)
    for solver in (lanczos, power_iteration):
        result = solver(lambda v: a @ v, start, 1e-12, 3)
        assert result.iterations == 3
        assert not result.converged


def test_max_iter_must_be_positive():
    start = torch.ones(3, dtype=torch.float64)
    for solver in (lanczos, power_iteration):
        with pytest.raises(ConfigurationError, match="max_iter >= 1, got 0"):
            solver(lambda v: v, start, 1e-3, 0)


@pytest.mark.parametrize("seed", range(3))
def test_lanczos_top_k_of_a_low_rank_positive_semidefinite_matrix(seed):
    """A GGN-like ``V V^T`` of rank 12 in 80 dimensions: its 4 largest eigenvalues."""
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(80, 12, generator=gen, dtype=torch.float64)
    a = factor @ factor.T
    expected = torch.linalg.eigvalsh(a).flip(0)[:4]
    start = torch.randn(80, generator=gen, dtype=torch.float64)
    result = lanczos(lambda v: a @ v, start, tol=1e-12, max_iter=80, k=4)
    assert result.converged
    assert result.iterations <= 14  # the Krylov space closes at rank + 1
    torch.testing.assert_close(
        torch.tensor(result.values, dtype=torch.float64), expected, rtol=1e-10, atol=0
    )
    assert result.value == result.values[0]


def test_lanczos_top_k_stops_when_all_k_settle():
    """Loose tolerance: it stops early, with estimates below the eigenvalues."""
    a = symmetric(60, 4)
    expected = torch.linalg.eigvalsh(a).flip(0)[:3]
    start = torch.randn(60, dtype=torch.float64)
    result = lanczos(lambda v: a @ v, start, tol=1e-2, max_iter=60, k=3)
    assert result.converged and result.iterations < 60
    got = torch.tensor(result.values, dtype=torch.float64)
    assert torch.all(got <= expected + 1e-9)  # Ritz values interlace from below
    assert got[0] == pytest.approx(expected[0].item(), rel=0.05)


def test_lanczos_needs_max_iter_of_at_least_k():
    start = torch.ones(5, dtype=torch.float64)
    with pytest.raises(ConfigurationError, match="max_iter >= 3, got 2"):
        lanczos(lambda v: v, start, 1e-3, 2, k=3)


def test_lanczos_restart_holds_all_k_directions():
    """Restarted on the same matrix, all k estimates are there after a few products."""
    a = symmetric(60, 5)
    expected = torch.linalg.eigvalsh(a).flip(0)[:4]
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(60, dtype=torch.float64, generator=gen)
    first = lanczos(lambda v: a @ v, start, 1e-12, 60, 4)
    again = lanczos(lambda v: a @ v, first.restart, 1e-6, 60, 4)
    cold = lanczos(lambda v: a @ v, start, 1e-6, 60, 4)
    assert again.converged and cold.converged
    assert again.iterations <= 6 < 3 * 6 <= cold.iterations
    torch.testing.assert_close(
        torch.tensor(again.values, dtype=torch.float64), expected, rtol=1e-6, atol=0
    )


def test_lanczos_from_an_eigenvector_still_finds_k():
    """Started on an exact eigenvector the Krylov space closes at once; a random
    orthogonal direction goes on, drawn from the given generator only."""
    values = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    a = torch.diag(values)
    start = torch.zeros(6, dtype=torch.float64)
    start[2] = 1.0  # the eigenvector of 3, not of the largest
    state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(7)
    result = lanczos(lambda v: a @ v, start, 1e-12, 6, 3, generator)
    assert torch.equal(torch.get_rng_state(), state)
    assert result.values == pytest.approx([5.0, 4.0, 3.0], rel=1e-10)
    assert result.converged


def test_lanczos_of_zero_gives_k_zeros():
    result = lanczos(lambda v: 0 * v, torch.ones(5, dtype=torch.float64), 1e-3, 5, 3)
    assert result.values == [0.0, 0.0, 0.0] and result.converged


def clustered(d: int, seed: int) -> torch.Tensor:
    """``Q diag(lambda) Q^T``: top eigenvalues 1.0 and 0.98, the rest in [-0.5, 0.9].

    A close pair at the top, as on the Hessians of the 3c3d benchmark: a settled
    estimate takes many products there.
    """
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    rest = torch.rand(d - 2, generator=gen, dtype=torch.float64) * 1.4 - 0.5
    values = torch.cat([torch.tensor([1.0, 0.98], dtype=torch.float64), rest])
    return q @ torch.diag(values) @ q.T


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("matrix", [symmetric, clustered])
def test_lanczos_residual_rule_brackets_the_largest_eigenvalue(matrix, seed):
    """``lambda_max`` in ``[value, value + residual]``, the residual at most 5 %."""
    a = matrix(120, seed)
    top = torch.linalg.eigvalsh(a)[-1].item()
    start = torch.randn(120, generator=torch.Generator().manual_seed(seed + 100))
    result = lanczos(
        lambda v: a @ v, start.double(), tol=1e-12, max_iter=120, max_error=0.05
    )
    assert result.converged
    assert result.residual <= 0.05 * abs(result.value)
    residual = (a @ result.vector - result.value * result.vector).norm().item()
    assert residual == pytest.approx(result.residual, rel=1e-6, abs=1e-12)
    assert result.value <= top + 1e-12
    assert top - result.value <= result.residual


@pytest.mark.parametrize("seed", range(4))
def test_lanczos_residual_rule_needs_fewer_products_than_a_settled_estimate(seed):
    """On a clustered top the bound is met long before the estimate settles."""
    a = clustered(200, seed)
    start = torch.randn(200, generator=torch.Generator().manual_seed(seed)).double()
    bounded = lanczos(lambda v: a @ v, start, 1e-12, 200, max_error=0.05)
    settled = lanczos(lambda v: a @ v, start, 1e-3, 200)
    assert bounded.converged and settled.converged
    assert bounded.iterations < settled.iterations


def test_lanczos_residual_rule_for_k_estimates():
    """Every one of the k estimates lies within its bound of some eigenvalue."""
    a = symmetric(80, 3)
    values = torch.linalg.eigvalsh(a)
    start = torch.randn(80, generator=torch.Generator().manual_seed(1)).double()
    result = lanczos(lambda v: a @ v, start, 1e-12, 80, k=3, max_error=0.02)
    assert result.converged and result.iterations < 80
    for estimate in result.values:
        assert (values - estimate).abs().min().item() <= result.residual
        assert result.residual <= 0.02 * max(abs(v) for v in result.values)


def test_power_iteration_residual_rule():
    a = symmetric(30, 2, shift=20.0)
    top = torch.linalg.eigvalsh(a)[-1].item()
    start = torch.randn(30, generator=torch.Generator().manual_seed(0)).double()
    result = power_iteration(lambda v: a @ v, start, 1e-12, 10_000, max_error=0.01)
    assert result.converged
    assert result.residual <= 0.01 * result.value
    assert abs(top - result.value) <= result.residual
