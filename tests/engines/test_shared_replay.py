"""One replayed forward pass and one gradient graph per step, shared by the engines.

Counted with a forward pre-hook on the model (the user's call plus the tracker's
replays) and by wrapping ``torch.autograd.grad`` (``create_graph=True`` builds the
graph of the gradient that Hessian-vector products need); the values are checked
against the exact Hessian and against each quantity tracked alone.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import cockpit
from cockpit.quantities import GgnTopEigen, HessMaxEv, HessTrace
from tests.quantities.tracking import make_cockpit
from tests.reference_curvature import hessian

EXACT = {"tol": 1e-12, "max_iter": 200, "max_error": None}


class Work:
    """Counts model calls and gradient graphs built while the block runs."""

    def __init__(self, model: nn.Module, monkeypatch: pytest.MonkeyPatch):
        self.forwards = self.graphs = 0
        self.handle = model.register_forward_pre_hook(self._forward)
        original = torch.autograd.grad

        def grad(*args: Any, **kwargs: Any):
            self.graphs += bool(kwargs.get("create_graph", False))
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.autograd, "grad", grad)

    def _forward(self, module: nn.Module, args: tuple) -> None:
        self.forwards += 1


def one_step(model, loss_fn, x, y, logdir, quantities, monkeypatch, **kwargs):
    """Track one step; return the loaded run and the work counted during it."""
    ck = make_cockpit(model, loss_fn, logdir, quantities, **kwargs)
    work = Work(model, monkeypatch)
    with ck.track():
        loss_fn(model(x), y).backward()
    ck.close()
    work.handle.remove()
    monkeypatch.undo()
    return cockpit.load(ck.run_dir), work


def test_hutchinson_and_hess_max_ev_share_one_replay_and_one_graph(
    tmp_path, monkeypatch
):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    trace = HessTrace(curvature="hessian", probes=4)
    both = {"hess_trace": trace, "hess_max_ev": HessMaxEv(**EXACT)}
    run, work = one_step(
        model, loss_fn, x, y, tmp_path / "both", both, monkeypatch, engine="torch.func"
    )
    assert (work.forwards, work.graphs) == (2, 1)  # the user's call and one replay
    top = torch.linalg.eigvalsh(hessian(model, loss_fn, x, y))[-1]
    got = torch.tensor(run.scalar("hess_max_ev").iloc[0], dtype=torch.float64)
    torch.testing.assert_close(got, top, rtol=1e-8, atol=1e-10)
    alone = {"hess_trace": HessTrace(curvature="hessian", probes=4)}
    model.zero_grad()
    single, _ = one_step(
        model,
        loss_fn,
        x,
        y,
        tmp_path / "alone",
        alone,
        monkeypatch,
        engine="torch.func",
    )
    assert run.scalar("hess_trace").iloc[0] == single.scalar("hess_trace").iloc[0]
    assert (
        run.scalar("hess_trace.std_error").iloc[0]
        == single.scalar("hess_trace.std_error").iloc[0]
    )


def test_a_batchnorm_step_replays_its_batch_once(tmp_path, monkeypatch):
    """Per-sample rows, GGN columns (diagonal and Gram) and the eigensolve: one
    replay of the batch-coupled forward pass instead of four."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    quantities = {
        "grad_norm": 1,
        "hess_trace": HessTrace(curvature="ggn_exact"),
        "ggn_top_eigen": GgnTopEigen(k=2, exact=True),
        "hess_max_ev": HessMaxEv(**EXACT),
    }
    hess = hessian(copy.deepcopy(model), loss_fn, x, y)  # BatchNorm's buffers kept
    run, work = one_step(model, loss_fn, x, y, tmp_path, quantities, monkeypatch)
    assert set(run.meta["engines"]["batch replay"])  # the engine under test
    assert work.forwards == 2
    got = torch.tensor(run.scalar("hess_max_ev").iloc[0], dtype=torch.float64)
    torch.testing.assert_close(got, torch.linalg.eigvalsh(hess)[-1])
