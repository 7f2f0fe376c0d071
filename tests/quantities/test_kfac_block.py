"""``kfac_block``: the reduction against explicit Kronecker products, and KFLR's
blocks against the exact GGN where they coincide (one sample, ``Linear`` layers)."""

import copy
import dataclasses
import json
import math
import warnings

import pytest
import torch
from backpack import backpack, extend
from backpack.extensions import KFLR

from cockpit.exceptions import ConfigurationError
from cockpit.quantities import KfacBlock
from tests.problems import PROBLEMS
from tests.quantities.tracking import logged, tracked_run
from tests.reference_curvature import at_step, ggn, layout

#: MLP problems: every parameter belongs to a Linear layer on 2D inputs.
MLPS = [p for p in PROBLEMS if p.name.startswith("mlp")]
#: Problems whose model BackPACK's own ``extend`` accepts (no in-place ReLU).
EXTENDABLE = [*MLPS, next(p for p in PROBLEMS if p.name == "cnn-unfold-ce-sum")]


def kflr_factors(problem, params, step) -> dict[str, list[torch.Tensor]]:
    """KFLR factors from BackPACK's own ``extend`` on a copy of the model."""
    model, loss_fn, x, y = at_step(problem, params, step)
    model, loss_fn = extend(copy.deepcopy(model)), extend(loss_fn)
    with backpack(KFLR()), warnings.catch_warnings():
        # extend() uses module backward hooks; torch warns that the first layer's
        # hook fires with no input requiring grad, which is what we want here.
        warnings.filterwarnings("ignore", "Full backward hook is firing")
        loss_fn(model(x), y).backward()
    return {name: p.kflr for name, p in model.named_parameters()}


def block_numbers(factors: list[torch.Tensor], scale: float) -> tuple[float, ...]:
    """Top eigenvalue, trace, smallest and smallest nonzero eigenvalue of the
    explicit Kronecker product (nonzero: above 1e-10 times the top, in float64)."""
    block = factors[0] * scale
    for factor in factors[1:]:
        block = torch.kron(block, factor)
    values = torch.linalg.eigvalsh(block)
    top = values[-1].item()
    nonzero = values[values > 1e-10 * top].min().item()
    return top, block.trace().item(), values[0].item(), nonzero


@pytest.mark.parametrize("problem", EXTENDABLE, ids=[p.name for p in EXTENDABLE])
def test_reduction_matches_explicit_kronecker_product(problem, tmp_path):
    run, refs = tracked_run(problem, tmp_path, {"kfac_block": KfacBlock(kind="kflr")})
    for step, ref in enumerate(refs):
        factors = kflr_factors(problem, ref.params, step)
        scale = 1.0 if problem.loss().reduction == "mean" else 1 / problem.batch_size
        numbers = {n: block_numbers(f, scale) for n, f in factors.items()}
        for name, (top, trace, low, nonzero) in numbers.items():
            got_top = logged(run, "kfac_block.max_eigenvalue", step, name)
            assert got_top == pytest.approx(top, rel=1e-7)
            got_trace = logged(run, "kfac_block.trace", step, name)
            assert got_trace == pytest.approx(trace, rel=1e-7)
            got_condition = logged(run, "kfac_block.condition", step, name)
            if low <= 1e-10 * top:  # e.g. softmax: the all-ones output direction
                assert math.isnan(got_condition)
            else:
                assert got_condition == pytest.approx(top / low, rel=1e-5)
            got_nonzero = logged(run, "kfac_block.nonzero_condition", step, name)
            assert got_nonzero == pytest.approx(top / nonzero, rel=1e-5)
        tops = [top for top, *_ in numbers.values()]
        assert logged(run, "kfac_block.max_eigenvalue", step) == pytest.approx(
            max(tops), rel=1e-7
        )
        traces = [trace for _, trace, *_ in numbers.values()]
        assert logged(run, "kfac_block.trace", step) == pytest.approx(
            sum(traces), rel=1e-7
        )
        nonzeros = [nonzero for *_, nonzero in numbers.values()]
        assert logged(run, "kfac_block.nonzero_condition", step) == pytest.approx(
            max(tops) / min(nonzeros), rel=1e-5
        )


@pytest.mark.parametrize("problem", MLPS, ids=[p.name for p in MLPS])
def test_one_sample_kflr_is_the_exact_ggn_block(problem, tmp_path):
    """For one sample, a Linear layer's GGN block is exactly ``B (x) A``."""
    single = dataclasses.replace(problem, batch_size=1)
    run, refs = tracked_run(single, tmp_path, {"kfac_block": KfacBlock(kind="kflr")})
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(single, ref.params, step)
        exact = ggn(model, loss_fn, x, y)
        for name, piece in layout(model).items():
            block = exact[piece, piece]
            top = torch.linalg.eigvalsh(block)[-1].item()
            got_top = logged(run, "kfac_block.max_eigenvalue", step, name)
            assert got_top == pytest.approx(top, rel=1e-7, abs=1e-12)
            got_trace = logged(run, "kfac_block.trace", step, name)
            assert got_trace == pytest.approx(block.trace().item(), rel=1e-7)


def test_singular_block_has_no_condition_number_and_says_why(tmp_path):
    """One sample: ``A = x x^T`` has rank one, so the condition number is infinite;
    over the nonzero spectrum it is finite, and the explicit product's."""
    single = dataclasses.replace(MLPS[0], batch_size=1)
    run, refs = tracked_run(single, tmp_path, {"kfac_block": KfacBlock(kind="kflr")})
    assert math.isnan(logged(run, "kfac_block.condition", 0, "0.weight"))
    factors = kflr_factors(single, refs[0].params, 0)["0.weight"]
    top, _, _, nonzero = block_numbers(factors, 1.0)
    got = logged(run, "kfac_block.nonzero_condition", 0, "0.weight")
    assert got == pytest.approx(top / nonzero, rel=1e-5)
    record = json.loads(
        (next(tmp_path.iterdir()) / "steps.jsonl").read_text().split("\n")[0]
    )
    note = record["notes"]["kfac_block.condition.per_layer.0.weight"]
    assert "singular block" in note


def test_monte_carlo_kfac_runs_and_is_positive(chain_problem, tmp_path):
    run, _ = tracked_run(chain_problem, tmp_path, ["kfac_block"])
    assert logged(run, "kfac_block.max_eigenvalue", 0) > 0
    assert logged(run, "kfac_block.trace", 0) > 0


def test_unknown_kind():
    with pytest.raises(
        ConfigurationError, match=r"Unknown kind 'kfra'\. Choose one of: kfac, kflr"
    ):
        KfacBlock(kind="kfra")
