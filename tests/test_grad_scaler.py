"""Tracking with a ``GradScaler``: statistics of the unscaled gradients.

``scaler.scale(loss).backward()`` leaves ``S`` times the gradient in ``.grad`` and in
every backward hook. With ``Cockpit(grad_scaler=scaler)`` every logged value equals
the one of the same training without a scaler (the scale is a power of two, so
unscaling is exact up to the float32 rounding of the sums). A step the scaler skips
for overflowing gradients is logged with its non-finite values and raises no
diagnosis alert, and training goes on.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math

import pytest
import torch

import cockpit
from cockpit.diagnosis import diagnose
from cockpit.exceptions import (
    AbsentQuantityWarning,
    ConfigurationError,
    NonFiniteWarning,
)
from cockpit.logs import LogReader
from tests.test_training_unchanged import (
    OPTIMIZERS,
    ResidualNorm,
    full_tracking,
    make_data,
    mlp,
)

MODELS = {"mlp": mlp, "residual": ResidualNorm}


def train(model, batches, ck_kwargs, scaler=None):
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = OPTIMIZERS["sgd"].make(model.parameters())
    ck = cockpit.Cockpit(model, loss_fn, optimizer, grad_scaler=scaler, **ck_kwargs)
    torch.manual_seed(1234)
    for x, y in batches:
        optimizer.zero_grad()
        with ck.track():
            loss = loss_fn(model(x), y)
            (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
    ck.close()
    return ck.writer.run_dir


def flat(value, prefix=""):
    """Dotted key -> number of a record's values (timings left out)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            if "time" not in key:
                out.update(flat(inner, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {f"{prefix}{i}": v for i, v in enumerate(value)}
    return {prefix.rstrip("."): value}


def records(run_dir):
    return LogReader(run_dir).read_new()


@pytest.mark.parametrize("model_name", MODELS)
def test_statistics_are_those_of_the_unscaled_training(tmp_path, model_name):
    batches = make_data(model_name, "ce-mean")
    torch.manual_seed(0)
    model = MODELS[model_name]()
    twin = copy.deepcopy(model)
    kwargs = full_tracking(tmp_path, OPTIMIZERS["sgd"], model_name)
    # BackPACK's second-order extensions start at the loss module, not at the
    # scaled loss: with a scaler, curvature comes from torch.func, without Kronecker
    # factors. A scale of 1 takes the same engines, so Monte-Carlo estimates
    # (Hutchinson's) draw the same probes in both runs.
    runs = {}
    for name, model_copy, scale in (("plain", model, 1.0), ("scaled", twin, 2.0**14)):
        scaler = torch.amp.GradScaler("cpu", init_scale=scale)
        with contextlib.ExitStack() as stack:
            if model_name == "mlp":
                stack.enter_context(pytest.warns(AbsentQuantityWarning, match="kfac"))
            runs[name] = train(
                model_copy, batches, {**kwargs, "run_name": name}, scaler
            )
    plain, scaled = runs["plain"], runs["scaled"]
    expected, got = records(plain), records(scaled)
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    compared = 0
    for want, have in zip(expected, got, strict=True):
        want, have = flat(want["values"]), flat(have["values"])
        assert have.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                assert have[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
                compared += 1
            else:
                assert have[key] == value, key
    assert compared > 100
    meta = json.loads((scaled / "meta.json").read_text())
    assert meta["grad_scaler"] is True


def test_a_skipped_step_is_logged_and_not_diagnosed_as_broken(tmp_path):
    # Inputs of size ~1e3 give first-layer gradients of ~2**10: at float32's largest
    # power of two they overflow, the scaler skips that step and backs off to 2**27,
    # where they fit.
    batches = [(1e3 * x, y) for x, y in make_data("mlp", "ce-mean")]
    torch.manual_seed(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, backoff_factor=2.0**-100)
    kwargs = {"logdir": tmp_path, "preset": "economy"}
    with pytest.warns(NonFiniteWarning, match="step 0: non-finite values"):
        run_dir = train(mlp(), batches, kwargs, scaler)
    first, *rest = [r for r in records(run_dir) if "grad_norm" in r["values"]]
    assert any(path.startswith("grad_norm") for path in first["nonfinite"])
    assert math.isfinite(first["values"]["loss"]["total"])
    # The scaler skipped optimizer.step(): no step taken, so no update size.
    assert "update_size" not in first["values"]
    assert rest and all(
        not any(p.startswith("grad_norm") for p in r.get("nonfinite", ()))
        and r["values"]["update_size"]["total"] > 0
        for r in rest
    )
    assert [a.rule for a in diagnose(run_dir) if a.rule == "nonfinite"] == []


def test_a_grad_scaler_of_the_wrong_type_is_refused(tmp_path):
    model = mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="grad_scaler must be"):
        cockpit.Cockpit(model, loss_fn, optimizer, logdir=tmp_path, grad_scaler=1.0)
