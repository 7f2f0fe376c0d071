"""The tracked training on the digits that the demo and the digits examples share.

:func:`run` trains a classifier on :func:`cockpit.zoo.digits.train_valid` with SGD
(momentum 0.9 by default), tracked by a :class:`cockpit.Cockpit`, and logs the
validation loss and accuracy next to the tracker's quantities.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import cockpit
from cockpit.quantities import PRESETS
from cockpit.tracker import HIST_SAMPLES
from cockpit.zoo.digits import batches, train_valid

__all__ = ["LR", "Progress", "Settings", "evaluate", "run"]

#: SGD learning rate of the digits CNN (with momentum 0.9; the demo's plain SGD too).
LR = 0.05

Progress = Callable[[int, Tensor, float], None]
"""Called after every step with the step, its loss and the newest valid accuracy."""


@dataclass(frozen=True)
class Settings:
    """How :func:`run` trains and tracks; the examples' flags have the same names.

    ``run_name=None`` lets the tracker name the run (time and host); ``every`` tracks
    every quantity every k-th step instead of the preset's schedules;
    ``hist_samples=0`` makes the histograms exact; ``seed`` seeds the tracker and the
    batch order; validation runs every ``valid_every`` steps and after the last.
    ``momentum=0`` is plain SGD, which ``extra`` quantities such as
    ``early_stopping`` and ``cabs`` (requested by name, every step) need.
    """

    logdir: str = "runs"
    run_name: str | None = None
    steps: int = 300
    batch_size: int = 64
    lr: float = LR
    preset: str = "economy"
    every: int | None = None
    hist_samples: int = HIST_SAMPLES
    seed: int = 0
    valid_every: int = 50
    momentum: float = 0.9
    extra: tuple[str, ...] = ()


def evaluate(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode, without grad.

    Args:
        model: The classifier; put back in training mode afterwards.
        loss_fn: Loss with ``reduction="mean"``.
        x: Inputs.
        y: Labels.

    Returns:
        ``(loss, accuracy)`` as floats; accuracy in [0, 1].

    """
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
            loss = loss_fn(logits, y).item()
            accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    finally:
        model.train()
    return loss, accuracy


def _tracker(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    settings: Settings,
    config: dict[str, object],
) -> cockpit.Cockpit:
    hyperparameters = {
        key: value
        for key, value in asdict(settings).items()
        if key not in ("logdir", "run_name", "preset", "momentum", "extra")
    }
    overrides: dict[str, object] = dict.fromkeys(settings.extra, 1)
    if settings.every is not None:
        schedule = cockpit.every(settings.every)
        keys = [*PRESETS[settings.preset], *settings.extra]
        overrides = dict.fromkeys(keys, schedule)
    return cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=settings.logdir,
        run_name=settings.run_name,
        preset=settings.preset,
        quantities=overrides or None,
        hist_samples=settings.hist_samples,
        seed=settings.seed,
        config={**hyperparameters, "momentum": settings.momentum, **config},
    )


def run(model: nn.Module, settings: Settings, name: str, progress: Progress) -> Path:
    """Train ``model`` on the digits with SGD, tracked by a Cockpit; return the run dir.

    Args:
        model: A classifier from ``[N, 1, 8, 8]`` images to ``[N, 10]`` logits,
            freshly initialized (seed the global generator before building it).
        settings: What to train and track.
        name: The example's name, stored in the run's config.
        progress: Told about every step (e.g. to print the loss).

    Returns:
        The run directory, for ``cockpit.load``.

    """
    x_train, y_train, x_valid, y_valid = train_valid()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum
    )
    sizes = {"example": name, "n_train": len(y_train), "n_valid": len(y_valid)}
    ck = _tracker(model, loss_fn, optimizer, settings, sizes)
    data = batches(x_train, y_train, settings.batch_size, settings.seed)
    steps = settings.steps
    print(f"{name}: {steps} steps, preset {settings.preset}, logging to {ck.run_dir}")
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    valid_loss, valid_accuracy = float("nan"), float("nan")
    with ck:
        for step in range(steps):
            inputs, labels = next(data)
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(model(inputs), labels)
                loss.backward()
            optimizer.step()
            if step % settings.valid_every == 0 or step == steps - 1:
                valid_loss, valid_accuracy = evaluate(model, loss_fn, x_valid, y_valid)
                ck.log(step=step, valid_loss=valid_loss, valid_accuracy=valid_accuracy)
            progress(step, loss, valid_accuracy)
    print(f"Run written to {ck.run_dir}")
    print(
        f"Final train loss {loss.item():.4f}, validation loss {valid_loss:.4f}, "
        f"validation accuracy {valid_accuracy:.3f} after {steps} steps "
        f"({time.perf_counter() - start:.1f}s)"
    )
    return ck.run_dir
