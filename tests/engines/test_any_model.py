"""Any model: engine choice, the torch.func engine's estimators, and its refusals.

The statistics themselves are checked against brute force for every problem of
``tests/problems.py`` (residual, LayerNorm, tied, reused, functional tie, tiny
transformer) by the tests of ``tests/quantities``; here: that the engines agree
where both work, how the choice is made and said, Hutchinson's estimator, and
what is refused.
"""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn

import cockpit
from cockpit.engines import func_engine
from cockpit.exceptions import (
    AbsentQuantityWarning,
    ConfigurationError,
    UnsupportedModelError,
    UsageError,
)
from cockpit.quantities import CurvatureNoise, GgnTopEigen, HessTrace, TicDiag, TicTrace
from cockpit.zoo.models import class_axis_second
from tests import reference
from tests.problems import PROBLEMS, ClassAxisSecond, ResidualMLP
from tests.quantities.tracking import (
    assert_per_layer,
    check_per_layer_reference,
    make_cockpit,
    repeat_batch,
    tracked_run,
)
from tests.reference_curvature import ggn, hessian

BY_NAME = {p.name: p for p in PROBLEMS}

#: Everything deterministic: first-order quantities (histograms exact) and exact
#: curvature.
DETERMINISTIC = {
    "grad_norm": 1,
    "norm_test": 1,
    "inner_product_test": 1,
    "orthogonality_test": 1,
    "mean_gsnr": 1,
    "gradient_noise_scale": 1,
    "alpha": 1,
    "cabs": 1,
    "early_stopping": 1,
    "grad_hist_1d": 1,
    "hess_trace": HessTrace(curvature="ggn_exact"),
    "tic_diag": TicDiag(curvature="ggn_exact"),
    "tic_trace": TicTrace(curvature="ggn_exact"),
    "ggn_top_eigen": GgnTopEigen(k=2, exact=True),
    "curvature_noise": CurvatureNoise(k=2, exact=True),
}


def train(ck, model, loss_fn, batches, loss_input=None):
    for x, y in batches:
        ck.optimizer.zero_grad()
        with ck.track():
            out = model(x)
            loss_fn(out if loss_input is None else loss_input(out), y).backward()
        ck.optimizer.step()
    ck.close()
    return cockpit.load(ck.run_dir)


@pytest.mark.parametrize("name", ["mlp-ce-mean", "cnn-mse-sum", "cnn-unfold-ce-sum"])
def test_engines_agree_where_both_work(tmp_path, name):
    """auto (BackPACK here), torch.func and backpack log the same numbers."""
    problem = BY_NAME[name]
    frames = {}
    for engine in ("backpack", "auto", "torch.func"):
        run, _ = tracked_run(
            problem, tmp_path / engine, DETERMINISTIC, engine=engine, hist_samples=0
        )
        frames[engine] = run.scalars.set_index(["step", "quantity", "layer"])["value"]
        histograms = run.histograms.set_index(["step", "quantity", "layer"])
        frames[engine + "-hist"] = histograms["counts"].map(tuple)
    assert frames["auto"].index.equals(frames["backpack"].index)
    times = (
        frames["backpack"]
        .index.get_level_values("quantity")
        .isin(["tracker_time", "step_time"])
    )
    for engine in ("auto", "torch.func"):
        pd.testing.assert_series_equal(
            frames[engine][~times], frames["backpack"][~times], rtol=1e-7, atol=1e-12
        )
        assert frames[engine + "-hist"].equals(frames["backpack-hist"])


def test_choice_is_said_once_and_stored(tmp_path, capfd):
    model = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3)).double()
    ck = make_cockpit(
        model, nn.CrossEntropyLoss(), tmp_path, ["norm_test", "hess_trace"]
    )
    ck.close()
    lines = [line for line in capfd.readouterr().err.splitlines() if "engines" in line]
    assert lines == [
        "cockpit engines (engine='auto'): BackPACK for 4 parameters (0.weight, "
        "0.bias, 2.weight, 2.bias); torch.func per module for 2 parameters (1.weight, "
        "1.bias: "
        "LayerNorm is not a BackPACK layer); curvature by torch.func (BackPACK's "
        "second-order extensions cannot reach '1.weight')"
    ]
    engines = cockpit.load(ck.run_dir).meta["engines"]
    assert engines["backpack"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert set(engines["torch.func per module"]) == {"1.weight", "1.bias"}
    assert engines["torch.func replay"] == {}
    assert engines["curvature"] == "torch.func"


def test_tied_parameters_go_to_torch_func(tmp_path):
    ck = make_cockpit(
        BY_NAME["tied-mse-mean"].make()[0],
        nn.MSELoss(),
        tmp_path,
        ["norm_test"],
    )
    ck.close()
    assert ck.engines.module == {"a.weight": "shared by modules a, b"}


def test_unknown_engine_lists_the_choices(tmp_path):
    with pytest.raises(ConfigurationError, match="Choose one of: auto, backpack"):
        make_cockpit(nn.Linear(2, 2), nn.MSELoss(), tmp_path, ["loss"], engine="jax")


def test_functional_tie_moves_at_the_first_step(tmp_path, capfd):
    """The tie is found by the first step's check, and the statistics are right."""
    problem = BY_NAME["functional-tie-ce-mean"]
    check_per_layer_reference(problem, tmp_path, "norm_test", together=False)
    err = capfd.readouterr().err
    assert "torch.func replay from now on for embed.weight" in err
    assert "do not add up to its gradient" in err
    (run_dir,) = [d for d in tmp_path.rglob("meta.json")]
    engines = cockpit.load(run_dir.parent).meta["engines"]
    assert "do not add up" in engines["torch.func replay"]["embed.weight"]
    assert "embed.weight" not in engines["backpack"]


def test_functional_tie_is_refused_by_the_backpack_engine(tmp_path):
    model, loss_fn = BY_NAME["functional-tie-ce-mean"].make()
    x, y = BY_NAME["functional-tie-ce-mean"].batch(0)
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"], engine="backpack")
    with pytest.raises(UsageError, match=r"embed\.weight: its per-sample gradients"):
        train(ck, model, loss_fn, [(x, y)])


def test_reused_module_moves_to_torch_func(tmp_path, capfd):
    check_per_layer_reference(
        BY_NAME["reused-ce-mean"], tmp_path, "norm_test", together=True
    )
    assert (
        "torch.func per module from now on for twice.weight, twice.bias: its module runs more than once"
        in capfd.readouterr().err
    )


def test_broken_chain_moves_curvature_and_stops_kfac(tmp_path, capfd):
    """A residual model of BackPACK modules: found at the first curvature step."""
    problem = BY_NAME["residual-ce-mean"]
    quantities = {"hess_trace": HessTrace(curvature="ggn_exact"), "kfac_block": 1}
    with pytest.warns(AbsentQuantityWarning, match="'kfac_block' is not tracked"):
        run, refs = tracked_run(problem, tmp_path, quantities, steps=2)
    assert "curvature by torch.func from now on" in capfd.readouterr().err
    assert "kfac_block" not in set(run.scalars.quantity)
    # meta.json keeps what was found while training, for the dashboard and pandas.
    assert (
        "curvature for this model comes from torch.func"
        in run.meta["absent"]["kfac_block"]
    )
    assert run.meta["engines"]["curvature"] == "torch.func"
    assert "chain of modules broken" in run.meta["engines"]["curvature_why"]
    for step, ref in enumerate(refs):
        model, loss_fn = problem.make()
        model.load_state_dict(ref.params)
        x, y = problem.batch(step)
        trace = ggn(model, loss_fn, x, y).diagonal().sum()
        assert_per_layer(run, "hess_trace", step, {"total": trace})


def test_kfac_is_absent_where_curvature_comes_from_torch_func(tmp_path):
    model = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    with pytest.warns(AbsentQuantityWarning, match="Kronecker factors exist for"):
        ck = make_cockpit(
            model, nn.CrossEntropyLoss(), tmp_path, ["kfac_block", "hess_trace"]
        )
    ck.close()
    assert "kfac_block" in cockpit.load(ck.run_dir).meta["absent"]


def test_hutchinson_trace_and_its_standard_error(tmp_path):
    """Mean of the estimates within 4 standard errors of the exact Hessian trace;
    the logged standard error matches the spread of the estimates."""
    problem = BY_NAME["residual-ce-mean"]
    draws, probes = 100, 8
    quantity = HessTrace(curvature="hessian", probes=probes)
    run, (model, loss_fn, x, y) = repeat_batch(
        problem, tmp_path, {"hess_trace": quantity}, draws
    )
    estimates = run.scalar("hess_trace")
    errors = run.scalar("hess_trace.std_error")
    assert run.scalar("hess_trace.probes").eq(probes).all()
    exact = hessian(model, loss_fn, x, y).diagonal().sum().item()
    assert len(estimates) == draws and estimates.std() > 0
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / math.sqrt(draws)
    # Each logged error estimates the spread of one estimate (8 probes): within
    # 30 % of the spread over 100 draws.
    assert errors.mean() == pytest.approx(estimates.std(), rel=0.3)


def test_monte_carlo_ggn_by_torch_func_converges(tmp_path):
    """The torch.func engine's one-label-per-sample GGN diagonal is unbiased."""
    problem = BY_NAME["transformer-ce-mean"]
    draws = 200
    run, (model, loss_fn, x, y) = repeat_batch(problem, tmp_path, ["hess_trace"], draws)
    estimates = run.scalar("hess_trace")
    exact = ggn(model, loss_fn, x, y).diagonal().sum().item()
    assert estimates.std() > 0
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / math.sqrt(draws)


def test_small_chunks_give_the_same_statistics(tmp_path, monkeypatch):
    """Chunks of one sample (a tiny memory budget) change nothing."""
    monkeypatch.setattr(func_engine, "CHUNK_ELEMENTS", 1)
    check_per_layer_reference(
        BY_NAME["transformer-ce-mean"], tmp_path, "norm_test", together=True
    )


def test_loss_input_maps_the_output(tmp_path):
    """A model with ``[N, T, V]`` logits, the loss on their transpose: the replay
    (curvature) applies ``loss_input`` per sample."""
    problem = BY_NAME["transformer-ce-mean"]
    model, loss_fn = problem.make()[0].inner, nn.CrossEntropyLoss()
    same = ClassAxisSecond(model)  # the same parameters, the transposed output
    x, y = problem.batch(0)
    grads = reference.per_sample_grads(same, loss_fn, x, y)
    trace = ggn(same, loss_fn, x, y).diagonal().sum()
    quantities = {"norm_test": 1, "hess_trace": HessTrace(curvature="ggn_exact")}
    ck = make_cockpit(
        model, loss_fn, tmp_path, quantities, loss_input=class_axis_second
    )
    run = train(ck, model, loss_fn, [(x, y)], class_axis_second)
    expected = reference.norm_test(reference.flat(grads))
    assert_per_layer(run, "norm_test", 0, {"total": expected})
    assert_per_layer(run, "hess_trace", 0, {"total": trace})


def test_missing_loss_input_is_explained(tmp_path):
    problem = BY_NAME["transformer-ce-mean"]
    model, loss_fn = problem.make()[0].inner, nn.CrossEntropyLoss()
    ck = make_cockpit(model, loss_fn, tmp_path, ["hess_trace"])
    with pytest.raises(UsageError, match=r"loss_input=lambda out: out\.transpose"):
        train(ck, model, loss_fn, [problem.batch(0)], class_axis_second)


class DictOutput(nn.Module):
    """Returns ``{"logits": ...}``; its own ``scale`` needs the whole-model replay."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(3)
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 0.5]))

    def forward(self, x):
        return {"logits": self.norm(x) * self.scale}


class Logits(nn.Module):
    """The same model and parameters, returning the logits themselves."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)["logits"]


def test_model_returning_a_dict_is_understood_without_loss_input(tmp_path):
    model = DictOutput().double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 3, (4,))
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    assert ck.engines.replay == {
        "scale": "owned by a module with submodules (DictOutput)"
    }
    twin = copy.deepcopy(model)
    grads = reference.per_sample_grads(Logits(model), loss_fn, x, y)
    expected = reference.norm_test(reference.flat(grads))
    run = train(ck, model, loss_fn, [(x, y)], lambda out: out["logits"])
    assert_per_layer(run, "norm_test", 0, {"total": expected})
    model = twin  # with loss_input given: the same values
    ck = make_cockpit(
        model, loss_fn, tmp_path, ["norm_test"], loss_input=lambda out: out["logits"]
    )
    run = train(ck, model, loss_fn, [(x, y)], lambda out: out["logits"])
    assert_per_layer(run, "norm_test", 0, {"total": expected})


def test_batchnorm_in_training_mode_is_tracked_through_the_batch_and_eval_mode_too(
    tmp_path,
):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    coupled = reference.norm_test(
        reference.flat(reference.batch_coupled_grads(model, loss_fn, x, y))
    )
    ck = make_cockpit(model, loss_fn, tmp_path / "train", ["norm_test"])
    run = train(ck, model, loss_fn, [(x, y)])
    assert_per_layer(run, "norm_test", 0, {"total": coupled})
    model.eval()
    expected = reference.norm_test(
        reference.flat(reference.per_sample_grads(model, loss_fn, x, y))
    )
    ck = make_cockpit(model, loss_fn, tmp_path / "eval", ["norm_test"])
    run = train(ck, model, loss_fn, [(x, y)])
    assert_per_layer(run, "norm_test", 0, {"total": expected})


def test_gradient_accumulation_is_refused(tmp_path):
    model, loss_fn = PROBLEMS[0].make()
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    (x1, y1), (x2, y2) = PROBLEMS[0].batch(0), PROBLEMS[0].batch(1)
    ck.optimizer.zero_grad()
    with ck.track():
        loss_fn(model(x1), y1).backward()
    with (
        pytest.raises(UsageError, match="gradient accumulation over micro-batches"),
        ck.track(),
    ):
        loss_fn(model(x2), y2).backward()
    ck.close()


def test_one_tracked_micro_batch_per_step_describes_that_micro_batch(tmp_path):
    """The documented way: track() around one micro-batch per optimizer step."""
    problem = PROBLEMS[0]
    model, loss_fn = problem.make()
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    (x1, y1), (x2, y2) = problem.batch(0), problem.batch(1)
    expected = reference.norm_test(
        reference.flat(reference.per_sample_grads(model, loss_fn, x2, y2))
    )
    ck.optimizer.zero_grad()
    loss_fn(model(x1), y1).backward()  # first micro-batch, untracked
    with ck.track():
        loss_fn(model(x2), y2).backward()
    ck.optimizer.step()
    ck.close()
    assert_per_layer(cockpit.load(ck.run_dir), "norm_test", 0, {"total": expected})


def test_dropout_masks_of_the_replay_leave_training_alone(tmp_path):
    """The replay draws its own dropout masks without touching the global stream."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 4), nn.LayerNorm(4), nn.Dropout(0.5), nn.Linear(4, 3)
    ).double()
    loss_fn = nn.CrossEntropyLoss()
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    torch.manual_seed(1)
    train(ck, model, loss_fn, [(x, y)])
    after = torch.get_rng_state()
    torch.manual_seed(1)
    torch.nn.functional.dropout(
        torch.ones(6, 4, dtype=torch.float64), 0.5
    )  # what the step itself drew
    assert torch.equal(after, torch.get_rng_state())


def test_residual_model_first_order_by_backpack_and_curvature_by_func(tmp_path):
    model = ResidualMLP()
    ck = make_cockpit(
        model, nn.CrossEntropyLoss(), tmp_path, ["norm_test", "hess_trace"]
    )
    ck.close()
    assert ck.engines.func == {}
    assert ck.engines.curvature == "backpack"  # until the first step finds the chain


class LearnedPositions(nn.Module):
    """GPT-2 style: a position embedding looked up on ``arange(T)`` (no batch
    dimension), plus a custom positional table called with an int."""

    class Table(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(3, 4) * 0.1)

        def forward(self, length: int) -> torch.Tensor:
            return self.table[:length]

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(5, 4)
        self.pos = nn.Embedding(3, 4)
        self.extra = self.Table()
        self.head = nn.Linear(4, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.tok(tokens) + self.pos(torch.arange(t)) + self.extra(t)
        return self.head(torch.tanh(h)).transpose(1, 2)


def test_parameters_without_per_sample_calls_move_to_the_replay(tmp_path, capfd):
    """A position embedding on ``arange(T)`` (BackPACK's hooks see T "samples") and a
    custom table called with an int (no batch dimension) both end in the replay."""
    torch.manual_seed(0)
    model, loss_fn = LearnedPositions().double(), nn.CrossEntropyLoss()
    problem = BY_NAME["transformer-ce-mean"]
    batches = [problem.batch(step) for step in range(2)]
    expected = []
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    for x, y in batches:
        grads = reference.per_sample_grads(model, loss_fn, x, y)
        expected.append(reference.norm_test(reference.flat(grads)))
        ck.optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        ck.optimizer.step()
    ck.close()
    run = cockpit.load(ck.run_dir)
    for step, value in enumerate(expected):
        assert_per_layer(run, "norm_test", step, {"total": value})
    assert set(ck.engines.replay) >= {"pos.weight", "extra.table"}
    err = capfd.readouterr().err
    assert "torch.func replay from now on for extra.table: its module's output" in err
    assert "for pos.weight: its module's input has no batch dimension" in err


class Gate(nn.Module):
    """Data-dependent control flow, which vmap refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale if bool((x > 0).any()) else x


def test_a_model_torch_func_cannot_vectorize_is_refused_clearly(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), Gate()).double()
    loss_fn = nn.CrossEntropyLoss()
    ck = make_cockpit(model, loss_fn, tmp_path, ["norm_test"])
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 3, (4,))
    with pytest.raises(UnsupportedModelError, match="data-dependent control flow"):
        train(ck, model, loss_fn, [(x, y)])
