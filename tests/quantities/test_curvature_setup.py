"""Curvature quantities: what they refuse, what they share, and the presets."""

import pytest
import torch
from backpack.extensions import DiagGGNExact, DiagGGNMC
from torch import nn

import cockpit
from cockpit.engines.curvature import CurvatureRequest
from cockpit.exceptions import ConfigurationError, UnsupportedModelError
from cockpit.quantities import PRESETS, HessTrace, TicDiag, TicTrace
from tests.problems import PROBLEMS
from tests.quantities.tracking import make_cockpit, tracked_run


def make(model, loss_fn, tmp_path, quantities):
    return make_cockpit(model, loss_fn, tmp_path, quantities, engine="backpack")


def test_unknown_curvature_lists_the_choices():
    with pytest.raises(
        ConfigurationError,
        match=r"Unknown curvature 'diag_h'\. Choose one of: ggn_exact, ggn_mc, hessian",
    ):
        HessTrace(curvature="diag_h")


def test_module_the_extension_cannot_handle_is_named(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(
        UnsupportedModelError,
        match=r"'hess_trace' needs BackPACK's DiagGGNMC, which cannot backpropagate "
        r"through module '1' \(LayerNorm\)",
    ):
        make(model, nn.CrossEntropyLoss(), tmp_path, ["hess_trace"])


def test_loss_the_extension_cannot_handle_is_named(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError, match=r"module 'loss_fn' \(L1Loss\)"):
        make(model, nn.L1Loss(), tmp_path, ["hess_trace"])


def test_broken_chain_of_modules_is_explained(tmp_path):
    problem = next(p for p in PROBLEMS if not p.chain)  # torch.tanh in forward
    with pytest.raises(UnsupportedModelError, match="chain of modules"):
        tracked_run(problem, tmp_path, ["hess_trace"], engine="backpack")


def test_same_source_shares_one_extension():
    request = CurvatureRequest()
    for quantity in (HessTrace(), TicDiag(), TicTrace()):
        quantity.amend_curvature(request)
    extensions = request.extensions(lambda: 8)
    assert [type(e) for e in extensions] == [DiagGGNMC]
    TicDiag(curvature="ggn_exact").amend_curvature(request)
    assert sorted(type(e).__name__ for e in request.extensions(lambda: 8)) == [
        DiagGGNExact.__name__,
        DiagGGNMC.__name__,
    ]


def test_presets():
    curvature = {"hess_trace", "tic_diag", "tic_trace"}
    costly = {"hess_max_ev", "kfac_block", "ggn_top_eigen", "curvature_noise"}
    assert not (curvature | costly) & set(PRESETS["economy"])
    assert set(PRESETS["business"]) == set(PRESETS["economy"]) | curvature
    # The exact contents of every preset: tests/test_catalog.py.
    assert set(PRESETS["business"]) | costly <= set(PRESETS["full"])
    assert all(PRESETS["full"][name] == 10 for name in costly)
    assert all(PRESETS["full"][name] == 1 for name in PRESETS["business"])


def test_full_preset_runs_costly_quantities_every_tenth_step(tmp_path):
    problem = PROBLEMS[0]
    model, loss_fn = problem.make()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, preset="full")
    for step in range(12):
        x, y = problem.batch(step)
        optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()
    run = cockpit.load(ck.run_dir)
    assert run.scalar("hess_max_ev").index.tolist() == [0, 10]
    assert run.scalar("ggn_top_eigen.1").index.tolist() == [0, 10]
    assert run.scalar("hess_trace").index.tolist() == list(range(12))
    assert "HessMaxEv(schedule=every(k=10, start=0), method=" in repr(
        ck.quantities["hess_max_ev"]
    )
    assert run.meta["options"]["hess_trace"] == {"curvature": "ggn_mc"}
