"""``tic_diag`` and ``tic_trace`` against per-sample gradients and exact curvature."""

import pytest
import torch

from cockpit.quantities import TicDiag, TicTrace
from tests.problems import PROBLEMS
from tests.quantities.tracking import assert_per_layer, tracked_run
from tests.reference import flat
from tests.reference_curvature import at_step, ggn, hessian, layout

EXACT = {"hessian": hessian, "ggn_exact": ggn}
EPS = 1e-7


def expected_tic(model, second_moment, diagonal, kind: str) -> dict[str, torch.Tensor]:
    """Per layer and total, from ``M_j = mean_n g_nj^2`` and the curvature diagonal."""
    pieces = {**layout(model), "total": slice(None)}
    if kind == "tic_diag":
        return {
            n: (second_moment[s] / (diagonal[s] + EPS)).sum() for n, s in pieces.items()
        }
    return {
        n: second_moment[s].sum() / (diagonal[s].sum() + EPS) for n, s in pieces.items()
    }


def check_tic(problem, tmp_path, curvature, kind, engine="auto"):
    quantity = {"tic_diag": TicDiag, "tic_trace": TicTrace}[kind](curvature=curvature)
    # hess_trace shares the diagonal; the first-order quantities share the moments.
    quantities = {kind: quantity, "mean_gsnr": 1, "hess_trace": 1}
    run, refs = tracked_run(problem, tmp_path, quantities, engine=engine)
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        diagonal = EXACT[curvature](model, loss_fn, x, y).diagonal()
        second_moment = (flat(ref.grads) ** 2).mean(0)
        expected = expected_tic(model, second_moment, diagonal, kind)
        assert_per_layer(run, kind, step, expected)


@pytest.mark.parametrize("kind", ["tic_diag", "tic_trace"])
def test_tic_exact_hessian(chain_problem, tmp_path, kind):
    check_tic(chain_problem, tmp_path, "hessian", kind)


@pytest.mark.parametrize("kind", ["tic_diag", "tic_trace"])
def test_tic_exact_ggn(curvature_case, tmp_path, kind):
    problem, engine = curvature_case
    check_tic(problem, tmp_path, "ggn_exact", kind, engine)


def test_eps_is_configurable(tmp_path):
    problem = PROBLEMS[0]
    run, refs = tracked_run(
        problem, tmp_path, {"tic_trace": TicTrace(curvature="hessian", eps=0.5)}
    )
    model, loss_fn, x, y = at_step(problem, refs[0].params, 0)
    diagonal = hessian(model, loss_fn, x, y).diagonal()
    expected = (flat(refs[0].grads) ** 2).mean(0).sum() / (diagonal.sum() + 0.5)
    assert_per_layer(run, "tic_trace", 0, {"total": expected})
