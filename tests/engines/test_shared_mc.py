"""One Monte-Carlo GGN factor for ``ggn_mc``, ``kfac`` and the Gram matrices.

Given the same draw, each consumer of the shared factor gets what its own extension
computes from its own factor (float64, equal up to rounding); over many draws the
shared estimates are unbiased: their means match the exact GGN diagonal and KFLR's
exact output factors within four standard errors.
"""

from __future__ import annotations

import pytest
import torch
from backpack import backpack

from cockpit.engines import curvature
from cockpit.engines._backpack_hooks import attach_hooks
from cockpit.engines._shared_mc import SharedMonteCarlo
from cockpit.engines.curvature import CurvatureRequest, GramRequest
from tests.problems import PROBLEMS
from tests.reference_curvature import ggn

#: Chain problems with a convolution, a summed loss, MSE and cross-entropy.
CASES = [p for p in PROBLEMS if p.name in ("mlp-ce-mean", "mlp-mse-sum", "cnn-ce-mean")]


def curvature_of(problem, request: CurvatureRequest, seed: int, made=None):
    """What ``request``'s extensions leave at one backward pass with ``seed``."""
    model, loss_fn = problem.make() if made is None else made
    x, y = problem.batch(0)
    modules = [m for _, m in curvature.leaf_modules(model)]
    handles = attach_hooks(modules, True, loss_fn, lambda: seed)
    with backpack(*request.extensions(lambda: problem.batch_size)):
        loss_fn(model(x), y).backward()
    for handle in handles:
        handle.remove()
    return curvature.collect(dict(model.named_parameters()), request)


def full_request(samples: int | None = None) -> CurvatureRequest:
    return CurvatureRequest(
        diagonals={"ggn_mc"}, kronecker={"kfac"}, gram=GramRequest(samples=samples)
    )


def test_consumers_with_equal_samples_share_one_extension():
    exts = full_request().extensions(lambda: 6)
    assert len(exts) == 1 and isinstance(exts[0], SharedMonteCarlo)
    two = CurvatureRequest(
        diagonals={"ggn_mc", "ggn_exact"}, gram=GramRequest(mc_samples=2)
    )
    kinds = sorted(type(e).__name__ for e in two.extensions(lambda: 6))
    assert kinds == ["DiagGGNExact", "DiagGGNMC", "SqrtGGNMC"]
    both = CurvatureRequest(diagonals={"ggn_mc"}, kronecker={"kfac", "kflr"})
    kinds = sorted(type(e).__name__ for e in both.extensions(lambda: 6))
    assert kinds == ["KFLR", "SharedMonteCarlo"]


@pytest.mark.parametrize("problem", CASES, ids=[p.name for p in CASES])
def test_each_consumer_gets_what_its_own_extension_computes(problem):
    """Same seed, same labels drawn: the shared results equal the separate ones."""
    shared = curvature_of(problem, full_request(), seed=3)
    diagonal = curvature_of(problem, CurvatureRequest(diagonals={"ggn_mc"}), seed=3)
    kfac = curvature_of(problem, CurvatureRequest(kronecker={"kfac"}), seed=3)
    gram = curvature_of(problem, CurvatureRequest(gram=GramRequest()), seed=3)
    for name, value in diagonal.diagonals["ggn_mc"].items():
        torch.testing.assert_close(shared.diagonals["ggn_mc"][name], value)
    assert shared.kronecker["kfac"].keys() == kfac.kronecker["kfac"].keys()
    for name, factors in kfac.kronecker["kfac"].items():
        for got, expected in zip(shared.kronecker["kfac"][name], factors, strict=True):
            torch.testing.assert_close(got, expected)
    assert shared.gram.keys() == gram.gram.keys()
    for name, part in gram.gram.items():
        torch.testing.assert_close(shared.gram[name].gram, part.gram)
        torch.testing.assert_close(shared.gram[name].cross, part.cross)


def test_sub_sampled_gram_is_the_first_samples_of_the_shared_draw():
    """``samples=n``: the Gram parts of the first n samples of the one draw."""
    problem, n = CASES[0], 4
    whole = curvature_of(problem, CurvatureRequest(gram=GramRequest()), seed=5)
    shared = curvature_of(problem, full_request(samples=n), seed=5)
    for name, part in whole.gram.items():
        torch.testing.assert_close(shared.gram[name].gram, part.gram[:n, :n])
        torch.testing.assert_close(shared.gram[name].cross, part.cross[:n, :n])


def test_shared_estimates_are_unbiased():
    """Means over draws: the GGN diagonal, and KFAC's output factor against KFLR's."""
    problem, draws = CASES[0], 200
    made = problem.make()
    exact_diagonal = ggn(*made, *problem.batch(0)).diagonal()
    kflr = curvature_of(problem, CurvatureRequest(kronecker={"kflr"}), 0, made)
    diagonals, outputs = [], []
    for seed in range(draws):
        found = curvature_of(problem, full_request(), seed, made)
        diagonals.append(
            torch.cat([d.flatten() for d in found.diagonals["ggn_mc"].values()])
        )
        outputs.append(
            torch.cat([f[0].flatten() for f in found.kronecker["kfac"].values()])
        )
    exact_outputs = torch.cat([f[0].flatten() for f in kflr.kronecker["kflr"].values()])
    for samples, exact in ((diagonals, exact_diagonal), (outputs, exact_outputs)):
        stacked = torch.stack(samples)
        error = stacked.std(0) / draws**0.5
        assert (stacked.std(0) > 0).any(), "every draw was the same"
        assert ((stacked.mean(0) - exact).abs() <= 4 * error + 1e-12).all()
