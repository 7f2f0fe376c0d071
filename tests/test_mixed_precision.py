"""Tracking under ``torch.autocast`` (bfloat16 on the CPU) and of compiled models.

Training stays bit-identical to the untracked run with every quantity of ``full`` due
at every step, no step raises, and the per-sample statistics (computed in float32
from the bfloat16 activations and output gradients) agree with the gradient in
``.grad`` to bfloat16's precision, with no parameter sent to the replay by mistake.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

import cockpit
from tests.test_training_unchanged import (
    OPTIMIZERS,
    ResidualNorm,
    assert_bit_identical,
    full_tracking,
    make_data,
    mlp,
    snapshot,
)

MODELS = {"mlp": mlp, "residual": ResidualNorm}


def train_autocast(model, loss_fn, batches, ck_kwargs=None, compiled=False):
    """Like ``test_training_unchanged.train``, the forward pass under autocast."""
    optimizer = OPTIMIZERS["sgd"].make(model.parameters())
    ck = cockpit.Cockpit(model, loss_fn, optimizer, **ck_kwargs) if ck_kwargs else None
    forward = torch.compile(model) if compiled else model
    torch.manual_seed(1234)
    history, grads = [], []
    for x, y in batches:
        optimizer.zero_grad()
        with ck.track() if ck is not None else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(forward(x), y)
            loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        optimizer.step()
        history.append((loss.detach().clone(), snapshot(model)))
    if ck is not None:
        ck.close()
    return (history, torch.get_rng_state()), grads, ck


def twins_with_full_tracking(tmp_path, model_name):
    """Batches, a model and its copy, and ``full`` at every step without
    ``kfac_block``: autocast's casts between modules (and a GradScaler's scaled
    loss) send curvature to torch.func, where it is undefined."""
    batches = make_data(model_name, "ce-mean")
    torch.manual_seed(0)
    model = MODELS[model_name]()
    kwargs = full_tracking(tmp_path, OPTIMIZERS["sgd"], model_name)
    kwargs["quantities"].pop("kfac_block", None)
    return batches, model, copy.deepcopy(model), kwargs


@pytest.mark.parametrize("model_name", MODELS)
def test_training_under_autocast_is_unchanged(tmp_path, model_name):
    batches, model, twin, kwargs = twins_with_full_tracking(tmp_path, model_name)
    tracked, _, ck = train_autocast(model, nn.CrossEntropyLoss(), batches, kwargs)
    untracked, _, _ = train_autocast(twin, nn.CrossEntropyLoss(), batches)
    assert_bit_identical(tracked, untracked)
    run = cockpit.load(ck.run_dir)
    logged = set(run.scalars.quantity) | set(run.histograms.quantity)
    for name in ("grad_norm", "norm_test", "mean_gsnr", "alpha", "grad_hist_1d"):
        assert name in logged


@pytest.mark.parametrize("model_name", MODELS)
def test_statistics_under_autocast_agree_with_the_gradient(tmp_path, model_name):
    torch.manual_seed(0)
    model = MODELS[model_name]().eval()  # no dropout: .grad is the mean of the g_n
    kwargs = {"logdir": tmp_path, "preset": "economy"}
    batches = make_data(model_name, "ce-mean")[:3]
    _, grads, ck = train_autocast(model, nn.CrossEntropyLoss(), batches, kwargs)
    assert ck.engines.replay == {}
    assert_layer_norms(ck.run_dir, grads, rel=2e-2)


def assert_layer_norms(run_dir, grads, rel):
    """Every step's logged per-layer ``grad_norm`` is ``||grads[step][layer]||``."""
    frame = cockpit.load(run_dir).scalars
    norms = frame[(frame.quantity == "grad_norm") & frame.layer.notna()]
    assert len(norms) == len(grads) * len(grads[0])
    for row in norms.itertuples():
        expected = torch.linalg.vector_norm(grads[row.step][row.layer]).item()
        assert row.value == pytest.approx(expected, rel=rel), (row.step, row.layer)


# Dynamo traces the forward hooks (the tracker's and BackPACK's) and warns at what it
# cannot trace (graph breaks, no errors).
@pytest.mark.filterwarnings("ignore:Dynamo does not know how to trace:UserWarning")
@pytest.mark.filterwarnings(
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
)
def test_compiled_model_is_tracked_and_training_unchanged(tmp_path):
    """``torch.compile``: hooks make graph breaks, every ``economy`` quantity is logged.

    (``full`` works too, checked by hand; it compiles for a minute on a CPU.)
    """
    batches = make_data("mlp", "ce-mean")[:2]
    torch.manual_seed(0)
    model = mlp().eval()
    twin = copy.deepcopy(model)
    kwargs = {"logdir": tmp_path, "preset": "economy"}
    runs, loss_fn = [], nn.CrossEntropyLoss()
    for net, ck_kwargs in ((model, kwargs), (twin, None)):
        optimizer = OPTIMIZERS["sgd"].make(net.parameters())
        ck = (
            cockpit.Cockpit(net, loss_fn, optimizer, **ck_kwargs) if ck_kwargs else None
        )
        forward = torch.compile(net)
        history, grads = [], []
        for x, y in batches:
            optimizer.zero_grad()
            with ck.track() if ck is not None else contextlib.nullcontext():
                loss = loss_fn(forward(x), y)
                loss.backward()
            grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
            optimizer.step()
            history.append((loss.detach(), snapshot(net)))
        if ck is not None:
            ck.close()  # the writer thread has written every record
        runs.append((history, grads, ck))
    for (loss, state), (loss_ref, state_ref) in zip(
        runs[0][0], runs[1][0], strict=True
    ):
        assert torch.equal(loss, loss_ref)
        for name, (param, _) in state.items():
            assert torch.equal(param, state_ref[name][0]), name
    frame = cockpit.load(runs[0][2].run_dir).scalars
    norms = frame[(frame.quantity == "grad_norm") & frame.layer.notna()]
    assert len(norms) == 2 * 4
    for row in norms.itertuples():
        expected = torch.linalg.vector_norm(runs[0][1][row.step][row.layer]).item()
        assert row.value == pytest.approx(expected, rel=1e-6)
    for name in ("alpha", "norm_test", "mean_gsnr", "grad_hist_1d"):
        assert name in set(frame.quantity) | set(
            cockpit.load(runs[0][2].run_dir).histograms.quantity
        )
