"""``hess_trace`` against the exact Hessian and GGN; its Monte-Carlo estimate."""

import pytest

from cockpit.quantities import HessTrace
from tests.problems import PROBLEMS
from tests.quantities.tracking import assert_per_layer, repeat_batch, tracked_run
from tests.reference_curvature import at_step, ggn, hessian, per_layer_sums

EXACT = {"hessian": hessian, "ggn_exact": ggn}


def check_exact_trace(problem, tmp_path, curvature, together, engine="auto"):
    quantities = {"hess_trace": HessTrace(curvature=curvature)}
    if together:  # the other curvature sources run in the same backward pass
        quantities.update(tic_diag=1, ggn_top_eigen=1, grad_norm=1)
        if problem.chain and engine == "auto":
            quantities.update(kfac_block=1)
    run, refs = tracked_run(problem, tmp_path, quantities, engine=engine)
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        diagonal = EXACT[curvature](model, loss_fn, x, y).diagonal()
        assert_per_layer(run, "hess_trace", step, per_layer_sums(model, diagonal))


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_exact_hessian_trace(chain_problem, tmp_path, together):
    """BackPACK's exact Hessian diagonal (torch.func estimates it: see below)."""
    check_exact_trace(chain_problem, tmp_path, "hessian", together)


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with-all"])
def test_exact_ggn_trace(curvature_case, tmp_path, together):
    problem, engine = curvature_case
    check_exact_trace(problem, tmp_path, "ggn_exact", together, engine)


def test_hessian_differs_from_ggn_on_sigmoid_mlp(tmp_path):
    """The sigmoid MLP's Hessian is not its GGN: the two sources must differ."""
    problem = PROBLEMS[0]
    logged = {}
    for curvature in EXACT:
        run, _ = tracked_run(
            problem,
            tmp_path / curvature,
            {"hess_trace": HessTrace(curvature=curvature)},
        )
        logged[curvature] = run.scalar("hess_trace").iloc[0]
    assert abs(logged["hessian"] - logged["ggn_exact"]) > 1e-3


def test_monte_carlo_trace_converges(tmp_path):
    """Steps at fixed parameters draw fresh labels; their mean is the exact GGN trace.

    The tolerance is 4 standard errors of the mean of T independent draws.
    """
    draws = 400
    run, (model, loss_fn, x, y) = repeat_batch(
        PROBLEMS[0], tmp_path, ["hess_trace"], draws
    )
    estimates = run.scalar("hess_trace")
    exact = ggn(model, loss_fn, x, y).diagonal().sum().item()
    assert len(estimates) == draws
    assert estimates.std() > 0, "every step drew the same labels"
    standard_error = estimates.std() / draws**0.5
    assert abs(estimates.mean() - exact) < 4 * standard_error
