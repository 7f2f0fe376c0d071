"""Tracking never changes training: gradients and parameters stay bit-identical.

Each test trains two copies of one model on the same data with the same global random
stream (Dropout draws from it), one inside ``track()`` blocks with every quantity due
at every step (Monte-Carlo curvature and the replayed forward pass included), one without a Cockpit, and compares ``.grad`` and the parameters after
every ``optimizer.step()`` with ``torch.equal``.
"""

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import cockpit
from cockpit.engines import batch_replay
from cockpit.quantities import PRESETS

STEPS = 6
BATCH = 8
CLASSES = 3


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, 10),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(10, CLASSES),
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, CLASSES),
    )


def bn_cnn() -> nn.Module:
    """BatchNorm in training mode: the batch replay; its running statistics are
    compared too."""
    return nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, CLASSES),
    )


class ResidualNorm(nn.Module):
    """LayerNorm, a residual connection and dropout: the torch.func engine's case."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 10)
        self.norm = nn.LayerNorm(10)
        self.inner = nn.Linear(10, 10)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(10, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + self.drop(torch.relu(self.inner(self.norm(h))))
        return self.out(h)


INPUT_SHAPES = {"mlp": (6,), "cnn": (2, 5, 5), "residual": (6,), "bn-cnn": (2, 5, 5)}
MODELS = {"mlp": mlp, "cnn": cnn, "residual": ResidualNorm, "bn-cnn": bn_cnn}


@dataclass
class OptimizerCase:
    """An optimizer setup: its factory, an optional scheduler, gradient clipping."""

    make: Any
    plain_sgd: bool = False
    scheduler: Any = None
    clip: bool = False


OPTIMIZERS = {
    "sgd": OptimizerCase(lambda p: torch.optim.SGD(p, lr=0.01), plain_sgd=True),
    "sgd-nesterov": OptimizerCase(
        lambda p: torch.optim.SGD(
            p, lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True
        )
    ),
    "adam": OptimizerCase(lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adamw": OptimizerCase(lambda p: torch.optim.AdamW(p, lr=1e-2)),
    "sgd-steplr": OptimizerCase(
        lambda p: torch.optim.SGD(p, lr=0.01),
        plain_sgd=True,
        scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    ),
    "sgd-lambdalr": OptimizerCase(
        lambda p: torch.optim.SGD(p, lr=0.01),
        plain_sgd=True,
        scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(
            o, lambda step: 1.0 / (1 + step)
        ),
    ),
    "adam-clip": OptimizerCase(lambda p: torch.optim.Adam(p, lr=1e-2), clip=True),
}

LOSSES = {
    "ce-mean": lambda: nn.CrossEntropyLoss(),
    "ce-sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "mse-mean": lambda: nn.MSELoss(),
    "mse-sum": lambda: nn.MSELoss(reduction="sum"),
}


def make_data(model_name: str, loss_name: str, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(BATCH, *INPUT_SHAPES[model_name], generator=gen)
        if loss_name.startswith("ce"):
            y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
        else:
            y = torch.randn(BATCH, CLASSES, generator=gen)
        batches.append((x, y))
    return batches


def snapshot(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Parameters with their gradients, and buffers (BatchNorm's running statistics)."""
    state: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {
        name: (
            p.detach().clone(),
            None if p.grad is None else p.grad.detach().clone(),
        )
        for name, p in model.named_parameters()
    }
    for name, buffer in model.named_buffers():
        state[f"buffer {name}"] = (buffer.detach().clone(), None)
    return state


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    case: OptimizerCase,
    batches,
    ck_kwargs: dict | None = None,
    zero_grad: str = "none",
):
    """Train ``model`` on ``batches``; tracked iff ``ck_kwargs`` is given.

    Args:
        zero_grad: ``"none"`` (set_to_none=True), ``"zeros"`` (set_to_none=False) or
            ``"never"`` (gradients accumulate over all steps).

    Returns:
        Per step: the loss, the snapshot of parameters and gradients after
        ``optimizer.step()``; then the global random state at the end.

    """
    optimizer = case.make(model.parameters())
    scheduler = case.scheduler(optimizer) if case.scheduler else None
    ck = None
    if ck_kwargs is not None:
        ck = cockpit.Cockpit(model, loss_fn, optimizer, **ck_kwargs)
    torch.manual_seed(1234)
    history = []
    for x, y in batches:
        if zero_grad != "never":
            optimizer.zero_grad(set_to_none=zero_grad == "none")
        block = ck.track() if ck is not None else contextlib.nullcontext()
        with block:
            loss = loss_fn(model(x), y)
            loss.backward()
        if case.clip:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        history.append((loss.detach().clone(), snapshot(model)))
    if ck is not None:
        ck.close()
    return history, torch.get_rng_state()


def assert_bit_identical(tracked, untracked):
    (history, rng), (history_ref, rng_ref) = tracked, untracked
    assert len(history) == len(history_ref) == STEPS
    for step, ((loss, state), (loss_ref, state_ref)) in enumerate(
        zip(history, history_ref, strict=True)
    ):
        assert torch.equal(loss, loss_ref), f"loss differs at step {step}"
        assert state.keys() == state_ref.keys()
        for name, (param, grad) in state.items():
            param_ref, grad_ref = state_ref[name]
            assert torch.equal(param, param_ref), f"{name} differs at step {step}"
            assert (grad is None) == (grad_ref is None)
            if grad is not None:
                assert torch.equal(grad, grad_ref), f"{name}.grad differs at {step}"
    assert torch.equal(rng, rng_ref), "tracking consumed the global random stream"


def full_tracking(tmp_path, case: OptimizerCase, model_name: str) -> dict:
    """Every quantity of ``full`` at every step (curvature included).

    The residual and BatchNorm models' curvature comes from torch.func, where
    ``kfac_block`` is not defined.
    """
    quantities = dict.fromkeys(PRESETS["full"], 1)
    if model_name in ("residual", "bn-cnn"):
        del quantities["kfac_block"]
    if case.plain_sgd:
        quantities.update(early_stopping=1, cabs=1)
    return {
        "logdir": tmp_path,
        "preset": None,
        "quantities": quantities,
        "hist_samples": 64,
    }


def run_both(tmp_path, model_name, loss_name, case, zero_grad="none", **options):
    """Train with ``full`` tracking (plus the Cockpit's ``options``) and without."""
    torch.manual_seed(0)
    model = MODELS[model_name]()
    twin = copy.deepcopy(model)
    loss_fn = LOSSES[loss_name]()
    batches = make_data(model_name, loss_name)
    tracked = train(
        model,
        loss_fn,
        case,
        batches,
        {**full_tracking(tmp_path, case, model_name), **options},
        zero_grad,
    )
    untracked = train(twin, loss_fn, case, batches, None, zero_grad)
    return tracked, untracked


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_optimizers_unchanged(tmp_path, model_name, optimizer):
    tracked, untracked = run_both(
        tmp_path, model_name, "ce-mean", OPTIMIZERS[optimizer]
    )
    assert_bit_identical(tracked, untracked)


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_losses_unchanged(tmp_path, model_name, loss_name, optimizer):
    tracked, untracked = run_both(
        tmp_path, model_name, loss_name, OPTIMIZERS[optimizer]
    )
    assert_bit_identical(tracked, untracked)


@pytest.mark.parametrize("zero_grad", ["zeros", "never"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gradients_kept_between_steps_unchanged(tmp_path, optimizer, zero_grad):
    tracked, untracked = run_both(
        tmp_path, "mlp", "ce-mean", OPTIMIZERS[optimizer], zero_grad=zero_grad
    )
    assert_bit_identical(tracked, untracked)


def test_tracked_gradient_is_this_blocks_contribution(tmp_path):
    """Without zero_grad, ``.grad`` sums all steps; grad_norm sees only this batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, CLASSES)).double()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=tmp_path,
        preset=None,
        quantities=["grad_norm"],
    )
    expected = []
    for x, y in make_data("mlp", "ce-mean"):
        x = x.double()
        reference = copy.deepcopy(model)
        grads = torch.autograd.grad(
            loss_fn(reference(x), y), list(reference.parameters())
        )
        expected.append(torch.cat([g.reshape(-1) for g in grads]).norm().item())
        with ck.track():
            loss_fn(model(x), y).backward()
        optimizer.step()
    ck.close()

    logged = cockpit.load(ck.run_dir).scalar("grad_norm")
    assert list(logged.index) == list(range(STEPS))
    torch.testing.assert_close(
        torch.tensor(logged.to_numpy()),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-10,
        atol=0,
    )
    # The accumulated .grad differs from the last batch's gradient: the check above
    # would fail if the tracker logged the norm of .grad itself.
    accumulated = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm()
    assert not torch.isclose(
        accumulated, torch.tensor(expected[-1], dtype=torch.float64)
    )


@pytest.mark.parametrize("rows", [1, 3])
def test_batch_replay_one_pass_per_cotangent_unchanged(tmp_path, monkeypatch, rows):
    """The batch replay's route for large models (a backward pass per cotangent),
    forced on the small BatchNorm model, its rows reduced one at a time (the CPU's
    route) or stacked by 3 (other devices'): training and running statistics as
    without tracking."""
    monkeypatch.setattr(batch_replay, "LOOP_WIDTH", 0)
    monkeypatch.setattr(batch_replay, "loop_rows", lambda device, m, width: rows)
    tracked, untracked = run_both(tmp_path, "bn-cnn", "ce-mean", OPTIMIZERS["sgd"])
    assert_bit_identical(tracked, untracked)


def test_batch_replay_on_a_subsample_unchanged(tmp_path):
    """``replay_samples``: the gradients and the GGN diagonals of random subsamples
    (drawn from the tracker's stream, not the global one) leave training alone."""
    tracked, untracked = run_both(
        tmp_path, "bn-cnn", "ce-mean", OPTIMIZERS["sgd"], replay_samples=2
    )
    assert_bit_identical(tracked, untracked)
