"""Mixed precision as GPU training runs it: autocast with a ``GradScaler``.

Two settings run the same tests: bfloat16 autocast on the CPU (always) and float16
autocast on CUDA (skipped where no CUDA device is present), each with the scaler's
scaled backward pass, its unscaling and its skipped steps. Checked:

- training is bit-identical to the untracked run with every quantity of ``full`` due
  at every step;
- the logged gradient norms are those of the unscaled ``.grad`` (the scale is a
  power of two, so unscaling is exact up to float32 rounding of the sums);
- a step the scaler skips for overflowing gradients is logged without
  ``update_size`` and ``alpha``, and the steps it takes have them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import cockpit
from cockpit.exceptions import AbsentQuantityWarning, NonFiniteWarning
from tests.test_mixed_precision import (
    MODELS,
    assert_layer_norms,
    twins_with_full_tracking,
)
from tests.test_training_unchanged import (
    OPTIMIZERS,
    assert_bit_identical,
    make_data,
    mlp,
    snapshot,
)


@dataclass(frozen=True)
class Precision:
    """One mixed-precision setting and a scale that overflows its gradients once."""

    device: str
    dtype: torch.dtype
    overflow_scale: float  # the first step's scale: its gradients overflow
    backoff: float  # the factor after the overflow: then they fit
    input_factor: float  # inputs this much larger make the overflow certain


PRECISIONS = {
    # bfloat16 has float32's range: only a scale near float32's largest power of two,
    # with large inputs, overflows the gradients.
    "cpu-bfloat16": Precision("cpu", torch.bfloat16, 2.0**127, 2.0**-100, 1e3),
    # float16 overflows above 65504: gradients of size ~1 times 2**40 do.
    "cuda-float16": Precision("cuda", torch.float16, 2.0**40, 2.0**-30, 1.0),
}


@pytest.fixture(params=list(PRECISIONS))
def precision(request) -> Precision:
    setting = PRECISIONS[request.param]
    if setting.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return setting


def train(model, batches, precision, ck_kwargs=None, init_scale=2.0**14, backoff=0.5):
    """Train under autocast with a GradScaler; per step: (loss, snapshot), the
    unscaled gradients, and whether the scaler took the step."""
    device = precision.device
    model = model.to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = OPTIMIZERS["sgd"].make(model.parameters())
    scaler = torch.amp.GradScaler(device, init_scale=init_scale, backoff_factor=backoff)
    ck = None
    if ck_kwargs is not None:
        ck = cockpit.Cockpit(model, loss_fn, optimizer, grad_scaler=scaler, **ck_kwargs)
    torch.manual_seed(1234)
    history, grads, taken = [], [], []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        with ck.track() if ck is not None else contextlib.nullcontext():
            with torch.autocast(device, dtype=precision.dtype):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        taken.append(scaler.get_scale() >= scale)
        history.append((loss.detach().cpu(), _on_cpu(snapshot(model))))
    if ck is not None:
        ck.close()
    return (history, torch.get_rng_state()), grads, taken, ck


def _on_cpu(state):
    return {
        name: (value.cpu(), None if grad is None else grad.cpu())
        for name, (value, grad) in state.items()
    }


@pytest.mark.parametrize("model_name", MODELS)
def test_training_is_unchanged(tmp_path, precision, model_name):
    batches, model, twin, kwargs = twins_with_full_tracking(tmp_path, model_name)
    tracked, _, _, ck = train(model, batches, precision, kwargs)
    untracked, _, _, _ = train(twin, batches, precision)
    assert_bit_identical(tracked, untracked)
    logged = set(cockpit.load(ck.run_dir).scalars.quantity)
    for name in ("grad_norm", "norm_test", "mean_gsnr", "alpha", "update_size"):
        assert name in logged


@pytest.mark.parametrize("model_name", MODELS)
def test_gradient_norms_are_those_of_the_unscaled_gradient(
    tmp_path, precision, model_name
):
    torch.manual_seed(0)
    model = MODELS[model_name]().eval()
    batches = make_data(model_name, "ce-mean")[:3]
    kwargs = {"logdir": tmp_path, "preset": "economy"}
    _, grads, taken, ck = train(model, batches, precision, kwargs)
    assert all(taken)
    assert_layer_norms(ck.run_dir, grads, rel=1e-5)


@pytest.mark.filterwarnings("ignore::cockpit.exceptions.NonFiniteWarning")
def test_skipped_steps_have_no_update(tmp_path, precision):
    batches = [(precision.input_factor * x, y) for x, y in make_data("mlp", "ce-mean")]
    torch.manual_seed(0)
    kwargs = {
        "logdir": tmp_path,
        "preset": None,
        "quantities": {"grad_norm": 1, "update_size": 1, "alpha": 1},
    }
    with contextlib.ExitStack() as stack:
        stack.enter_context(pytest.warns(NonFiniteWarning))
        _, _, taken, ck = train(
            mlp(),
            batches,
            precision,
            kwargs,
            init_scale=precision.overflow_scale,
            backoff=precision.backoff,
        )
    assert not taken[0] and any(taken), taken
    run = cockpit.load(ck.run_dir)
    with_update = set(run.scalar("update_size").index)
    assert with_update == {step for step, took in enumerate(taken) if took}
    # alpha needs the step taken and the next step's slope: never at a skipped step.
    assert not set(run.scalar("alpha").index) & {
        step for step, took in enumerate(taken) if not took
    }


def test_absent_kfac_is_announced(tmp_path, precision):
    """The scaler moves curvature to torch.func, so ``kfac_block`` is absent, and
    says so instead of vanishing."""
    kwargs = {"logdir": tmp_path, "preset": None, "quantities": {"kfac_block": 1}}
    with pytest.warns(AbsentQuantityWarning, match="kfac"):
        train(mlp(), make_data("mlp", "ce-mean")[:1], precision, kwargs)
