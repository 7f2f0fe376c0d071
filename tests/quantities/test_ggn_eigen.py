"""``ggn_top_eigen`` and ``curvature_noise`` against the exact ``D x D`` GGN."""

import pytest
import torch

from cockpit.exceptions import ConfigurationError
from cockpit.quantities import CurvatureNoise, GgnTopEigen
from tests.problems import PROBLEMS
from tests.quantities.tracking import logged, tracked_run
from tests.reference import flat
from tests.reference_curvature import at_step, per_sample_ggn, top_eigen

K = 3


@pytest.mark.parametrize("samples", [None, 4], ids=["all", "first-4"])
def test_top_eigenvalues(curvature_case, tmp_path, samples):
    problem, engine = curvature_case
    quantity = GgnTopEigen(k=K, exact=True, samples=samples)
    run, refs = tracked_run(
        problem, tmp_path, {"ggn_top_eigen": quantity}, engine=engine
    )
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        used = slice(None) if samples is None else slice(0, samples)
        exact = per_sample_ggn(model, loss_fn, x, y)[used].mean(0)
        values, _ = top_eigen(exact, K)
        for i, value in enumerate(values):
            got = logged(run, f"ggn_top_eigen.{i + 1}", step)
            assert got == pytest.approx(value.item(), rel=1e-7, abs=1e-12)


def brute_force_noise(per_sample_ggns, grads, k):
    """Mean and SNR of ``e^T G_n e`` and ``g_n . e`` along the top eigenvectors."""
    values, vectors = top_eigen(per_sample_ggns.mean(0), k)
    curvatures = torch.einsum("dk,nde,ek->nk", vectors, per_sample_ggns, vectors)
    slopes = grads @ vectors
    slopes = slopes * torch.where(slopes.mean(0) < 0, -1.0, 1.0)
    out = {}
    for name, samples in (("curvature", curvatures), ("slope", slopes)):
        mean, var = samples.mean(0), samples.var(0, correction=1)
        out[f"{name}_mean"], out[f"{name}_snr"] = mean, mean**2 / var
    return values, out


@pytest.mark.parametrize("samples", [None, 4], ids=["all", "first-4"])
def test_curvature_noise(curvature_case, tmp_path, samples):
    problem, engine = curvature_case
    quantities = {
        "curvature_noise": CurvatureNoise(k=2, exact=True, samples=samples),
        "ggn_top_eigen": GgnTopEigen(k=2, exact=True, samples=samples),
        "grad_norm": 1,
    }
    run, refs = tracked_run(problem, tmp_path, quantities, engine=engine)
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        used = slice(None) if samples is None else slice(0, samples)
        ggns = per_sample_ggn(model, loss_fn, x, y)[used]
        values, expected = brute_force_noise(ggns, flat(ref.grads)[used], 2)
        for key, column in expected.items():
            for i, value in enumerate(column):
                got = logged(run, f"curvature_noise.{key}.{i + 1}", step)
                assert got == pytest.approx(value.item(), rel=1e-6, abs=1e-10), key
        # The mean directional curvature is the eigenvalue.
        torch.testing.assert_close(expected["curvature_mean"], values)


def test_monte_carlo_factor_runs(curvature_case, tmp_path):
    problem, engine = curvature_case
    quantities = ["ggn_top_eigen", "curvature_noise"]
    run, _ = tracked_run(problem, tmp_path, quantities, engine=engine)
    assert logged(run, "ggn_top_eigen.1", 0) >= logged(run, "ggn_top_eigen.2", 0) > 0


def test_k_above_the_configured_rank_bound_is_refused():
    with pytest.raises(
        ConfigurationError, match=r"k=10 .* at most mc_samples \* samples = 4"
    ):
        GgnTopEigen(k=10, samples=4)


def test_k_above_the_batch_rank_bound_is_refused(tmp_path):
    """6 samples x 3 classes: the GGN factor has 18 columns."""
    with pytest.raises(
        ConfigurationError,
        match="k=20 eigenvalues, but at this step the GGN factor has 18 columns",
    ):
        tracked_run(
            PROBLEMS[0],
            tmp_path,
            {"ggn_top_eigen": GgnTopEigen(k=20, exact=True, samples=None)},
        )


def test_different_factor_options_are_refused(tmp_path):
    quantities = {
        "ggn_top_eigen": GgnTopEigen(exact=True),
        "curvature_noise": CurvatureNoise(exact=False),
    }
    with pytest.raises(ConfigurationError, match="same exact/mc_samples/samples"):
        tracked_run(PROBLEMS[0], tmp_path, quantities)


def test_lanczos_top_eigenvalues(problem, tmp_path):
    """Matrix-free Lanczos on GGN-vector products: the whole batch's exact GGN.

    ``max_iter`` is the parameter count, so the Krylov space closes (rank + 1
    products, or D) before the cap: the estimates are exact Ritz values.
    """
    dim = sum(p.numel() for p in problem.make()[0].parameters())
    quantity = GgnTopEigen(k=K, method="lanczos", tol=1e-12, max_iter=dim)
    run, refs = tracked_run(problem, tmp_path, {"ggn_top_eigen": quantity})
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        values, _ = top_eigen(per_sample_ggn(model, loss_fn, x, y).mean(0), K)
        residual = logged(run, "ggn_top_eigen.residual", step)
        assert residual < 1e-5 * values[0].item()
        for i, value in enumerate(values):
            got = logged(run, f"ggn_top_eigen.{i + 1}", step)
            assert got == pytest.approx(value.item(), rel=1e-7, abs=1e-10)
            assert abs(got - value.item()) <= residual + 1e-12  # a valid error bound
        assert logged(run, "ggn_top_eigen.converged", step) == 1.0
        assert 1 <= logged(run, "ggn_top_eigen.iterations", step) <= dim


def test_lanczos_capped_solve_is_logged_unconverged_with_one_warning(tmp_path):
    """Settling two estimates takes a third product: capped at two, none converges."""
    quantity = GgnTopEigen(k=2, method="lanczos", tol=1e-12, max_iter=2)
    with pytest.warns(UserWarning, match="ggn_top_eigen did not converge") as caught:
        run, _ = tracked_run(PROBLEMS[0], tmp_path, {"ggn_top_eigen": quantity})
    assert sum("did not converge" in str(w.message) for w in caught) == 1
    for step in (0, 1):
        assert logged(run, "ggn_top_eigen.converged", step) == 0.0
        assert logged(run, "ggn_top_eigen.iterations", step) == 2


def test_lanczos_and_gram_noise_together(tmp_path):
    """Lanczos needs no GGN factor; curvature_noise keeps its own Gram matrices."""
    quantities = {
        "ggn_top_eigen": GgnTopEigen(k=2, method="lanczos", tol=1e-10, max_iter=60),
        "curvature_noise": CurvatureNoise(k=2, exact=True, samples=None),
    }
    run, _ = tracked_run(PROBLEMS[0], tmp_path, quantities)
    for i in (1, 2):
        eigenvalue = logged(run, f"ggn_top_eigen.{i}", 0)
        mean = logged(run, f"curvature_noise.curvature_mean.{i}", 0)
        assert eigenvalue == pytest.approx(mean, rel=1e-6)
    assert run.meta["options"]["ggn_top_eigen"]["method"] == "lanczos"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"method": "lanczos", "samples": 8},
            r"samples=8 only applies to method='gram'",
        ),
        (
            {"method": "lanczos", "exact": True},
            r"exact=True only applies to method='gram'",
        ),
        ({"max_iter": 50}, r"max_iter=50 only applies to method='lanczos'"),
        ({"method": "lanczos", "k": 5, "max_iter": 4}, r"max_iter >= 5, got .*4"),
        ({"method": "power"}, r"Unknown method 'power'. Choose one of: gram, lanczos"),
    ],
)
def test_options_of_the_other_method_are_refused(options, match):
    with pytest.raises(ConfigurationError, match=match):
        GgnTopEigen(**options)
