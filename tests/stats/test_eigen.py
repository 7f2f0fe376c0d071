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
