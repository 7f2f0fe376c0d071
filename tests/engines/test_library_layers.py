"""Closed forms for library layers: Hugging Face ``Conv1D``, RMSNorms, depthwise convs.

First-order statistics against brute force (per-sample gradients of the whole model
from ``tests/reference.py``) in float64, histograms against the torch.func replay,
and the engine each parameter gets (none of them the replay).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.pytorch_utils import Conv1D

import cockpit
from tests import reference
from tests.problems import Problem
from tests.quantities.tracking import assert_per_layer, tracked_run

#: Norms and projections only: the factored route without any per-sample gradient.
PROJECTIONS = ["grad_norm", "norm_test", "inner_product_test", "orthogonality_test"]
#: Element-wise statistics too: per-sample gradients a chunk of samples at a time.
ELEMENTWISE = [*PROJECTIONS, "mean_gsnr", "grad_hist_1d"]


class Conv1DStack(nn.Module):
    """``Conv1D`` on ``[N, T, in]`` tokens, one of them called twice, one on ``[N, in]``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = Conv1D(16, 8)  # [.., 8] -> [.., 16]
        self.mix = Conv1D(16, 16)
        self.head = Conv1D(3, 3 * 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mix(torch.tanh(self.up(x))))
        return self.head(self.mix(h).flatten(1))


class RMSNormMLP(nn.Module):
    """``torch.nn.RMSNorm`` and Llama's RMSNorm between linear layers on tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.norm = nn.RMSNorm(4)
        self.inner = nn.Linear(4, 4)
        self.llama_norm = LlamaRMSNorm(4)
        self.last = nn.Linear(2 * 4, 3)
        with torch.no_grad():  # away from the identity initialization
            self.norm.weight.uniform_(0.5, 1.5)
            self.llama_norm.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.norm(self.first(x)))
        return self.last(self.llama_norm(self.inner(h)).flatten(1))


def _depthwise_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # depthwise
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )


CONV1D = Problem("conv1d-ce-mean", Conv1DStack, nn.CrossEntropyLoss, (3, 8), 3)
RMSNORM = Problem(
    "rmsnorm-ce-sum",
    RMSNormMLP,
    lambda: nn.CrossEntropyLoss(reduction="sum"),
    (2, 5),
    3,
)
DEPTHWISE = Problem(
    "depthwise-ce-mean", _depthwise_cnn, nn.CrossEntropyLoss, (2, 5, 5), 3
)


def _check_against_brute_force(problem: Problem, logdir, quantities) -> None:
    run, refs = tracked_run(problem, logdir, quantities, hist_samples=0)
    for step, ref in enumerate(refs):
        per_sample = reference.layers_and_total(ref.grads)
        assert_per_layer(
            run,
            "grad_norm",
            step,
            {k: g.mean(0).norm() for k, g in per_sample.items() if k != "total"},
        )
        for name in quantities:
            if name in ("grad_norm", "grad_hist_1d"):
                continue
            brute_force = getattr(reference, name)
            assert_per_layer(
                run, name, step, {k: brute_force(g) for k, g in per_sample.items()}
            )


@pytest.mark.parametrize(
    "quantities", [PROJECTIONS, ELEMENTWISE], ids=["factored", "chunked"]
)
@pytest.mark.parametrize("problem", [CONV1D, RMSNORM, DEPTHWISE], ids=lambda p: p.name)
def test_first_order_statistics_match_brute_force(tmp_path, problem, quantities):
    _check_against_brute_force(problem, tmp_path, quantities)


@pytest.mark.parametrize("problem", [CONV1D, RMSNORM, DEPTHWISE], ids=lambda p: p.name)
def test_histograms_match_the_replay(tmp_path, problem):
    counts = {}
    for engine in ("auto", "torch.func"):
        run, _ = tracked_run(
            problem, tmp_path / engine, ["grad_hist_1d"], engine=engine, hist_samples=0
        )
        rows = run.histograms.set_index(["step", "quantity", "layer"])
        counts[engine] = rows["counts"].map(tuple)
    pd.testing.assert_series_equal(counts["auto"], counts["torch.func"])
    numel = sum(p.numel() for p in problem.make()[0].parameters())
    totals = counts["auto"].map(sum)
    assert (totals[totals.index.get_level_values("layer").isna()] == 6 * numel).all()


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (CONV1D, {"module": {"up", "mix", "head"}, "backpack": set()}),
        (
            RMSNORM,
            {"module": {"norm", "llama_norm"}, "backpack": {"first", "inner", "last"}},
        ),
        (DEPTHWISE, {"module": set(), "backpack": {"0", "2", "5"}}),
    ],
    ids=lambda p: getattr(p, "name", ""),
)
def test_no_library_layer_needs_the_replay(tmp_path, problem, expected):
    model, loss_fn = problem.make()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    ck = cockpit.Cockpit(
        model, loss_fn, optimizer, logdir=tmp_path, preset=None, quantities=ELEMENTWISE
    )
    for step in range(2):
        x, y = problem.batch(step)
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    engines = ck.engines
    assert engines.replay == {}
    assert {name.split(".")[0] for name in engines.module} == expected["module"]
    assert {name.split(".")[0] for name in engines.backpack} == expected["backpack"]
