"""Tracked training on scikit-learn's digits: what ``cockpit demo`` runs.

The data is scikit-learn's ``load_digits`` (1797 grey 8x8 images of the digits 0-9),
which ships with scikit-learn, so training runs offline on a CPU. ``cockpit demo`` runs
this module in a subprocess (``python -m cockpit.demo_training``), because the
dashboard never imports torch: it trains :func:`build_cnn` with the ``full`` preset,
writing to ``--logdir``, and shows a progress bar. The examples in ``examples/`` share
its data and training loop.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from tqdm import tqdm

import cockpit
from cockpit.quantities import PRESETS

__all__ = [
    "LR",
    "BarProgress",
    "Settings",
    "batches",
    "build_cnn",
    "evaluate",
    "load_data",
    "main",
    "run",
]

#: Images held out for validation (the rest, 1500, are for training).
N_VALID = 297
#: Seed of the permutation that splits train from validation; fixed so that every
#: run, whatever its ``--seed``, validates on the same images.
SPLIT_SEED = 0
#: SGD learning rate of the CNN (momentum 0.9).
LR = 0.05

Progress = Callable[[int, Tensor, float], None]
"""Called after every step with the step, its loss and the newest valid accuracy."""


def load_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The digits as float32 images in [0, 1], split into train and validation.

    Returns:
        ``x_train, y_train, x_valid, y_valid``: images of shape ``(N, 1, 8, 8)``
        (float32) and labels of shape ``(N,)`` (int64); 1500 train, 297 valid.

    """
    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    x, y = x[order], y[order]
    return x[:-N_VALID], y[:-N_VALID], x[-N_VALID:], y[-N_VALID:]


def batches(
    x: Tensor, y: Tensor, batch_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled mini-batches; each pass over the data is a new permutation.

    Args:
        x: Inputs, first dimension the samples.
        y: Labels, same first dimension.
        batch_size: Samples per batch; the last incomplete batch of a pass is dropped.
        seed: Seed of the iterator's own generator (the global one is not touched).

    Yields:
        ``(inputs, labels)`` batches of ``batch_size`` samples.

    Raises:
        ValueError: If ``batch_size`` is not between 1 and the number of samples.

    """
    if not 1 <= batch_size <= len(y):
        raise ValueError(f"batch_size must be in [1, {len(y)}], got {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]


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


def build_cnn() -> nn.Module:
    """A small CNN on ``(N, 1, 8, 8)`` images, 10 logits.

    Two 3x3 convolution blocks (16 and 32 channels, each ReLU and 2x2 max-pooling, so
    8x8 -> 4x4 -> 2x2) and two linear layers; about 14,000 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@dataclass(frozen=True)
class Settings:
    """How :func:`run` trains and tracks; the examples' flags have the same names.

    ``run_name=None`` lets the tracker name the run (time and host); ``every`` tracks
    every quantity every k-th step instead of the preset's schedules;
    ``hist_samples=0`` makes the histograms exact; ``seed`` seeds the tracker and the
    batch order; validation runs every ``valid_every`` steps and after the last.
    """

    logdir: str = "runs"
    run_name: str | None = None
    steps: int = 300
    batch_size: int = 64
    lr: float = LR
    preset: str = "economy"
    every: int | None = None
    hist_samples: int = 2**20
    seed: int = 0
    valid_every: int = 50


class BarProgress:
    """A ``tqdm`` bar over the steps, with the loss and validation accuracy.

    The bar opens at the first step, so that the lines printed before it stay on
    their own, and closes after the last step or on :meth:`close`.

    Args:
        steps: Steps of the run.

    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._bar: tqdm | None = None

    def __call__(self, step: int, loss: Tensor, valid_accuracy: float) -> None:
        if self._bar is None:
            self._bar = tqdm(total=self.steps, unit="step", desc="training")
        self._bar.update(1)
        last = step == self.steps - 1
        if step % 10 == 0 or last:
            self._bar.set_postfix(
                loss=f"{loss.item():.3f}", valid_acc=f"{valid_accuracy:.3f}"
            )
        if last:
            self.close()

    def close(self) -> None:
        """Close the bar if it is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
        if key not in ("logdir", "run_name", "preset")
    }
    overrides = None
    if settings.every is not None:
        schedule = cockpit.every(settings.every)
        overrides = dict.fromkeys(PRESETS[settings.preset], schedule)
    return cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=settings.logdir,
        run_name=settings.run_name,
        preset=settings.preset,
        quantities=overrides,
        hist_samples=settings.hist_samples,
        seed=settings.seed,
        config={**hyperparameters, "momentum": 0.9, **config},
    )


def run(model: nn.Module, settings: Settings, name: str, progress: Progress) -> Path:
    """Train ``model`` on the digits with SGD, tracked by a Cockpit; return the run dir.

    Args:
        model: A classifier from ``(N, 1, 8, 8)`` images to 10 logits, freshly
            initialized (seed the global generator before building it).
        settings: What to train and track.
        name: The example's name, stored in the run's config.
        progress: Told about every step (e.g. to print the loss).

    Returns:
        The run directory, for ``cockpit.load``.

    """
    x_train, y_train, x_valid, y_valid = load_data()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
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


def _stop_on_signals() -> None:
    """Turn the first SIGINT or SIGTERM into ``KeyboardInterrupt``; ignore the rest.

    The interrupt leaves the training loop through the Cockpit's context, which
    writes what is pending and marks the run ``crashed``; a second signal must not
    interrupt that.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        for other in (signal.SIGINT, signal.SIGTERM):
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _parse(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m cockpit.demo_training",
        description="Train a small CNN on scikit-learn's digits with the full preset, "
        "tracked by cockpit (what `cockpit demo` runs).",
    )
    parser.add_argument("--logdir", required=True, help="directory of the runs")
    parser.add_argument("--run-name", default=None, help="run directory name")
    parser.add_argument("--steps", type=int, required=True, help="training steps")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    return Settings(args.logdir, args.run_name, args.steps, preset="full")


def main(argv: Sequence[str] | None = None) -> int:
    """Train the CNN with the ``full`` preset and a progress bar; the exit status.

    Args:
        argv: ``--logdir DIR --steps N [--run-name NAME]``; ``None`` reads
            ``sys.argv``.

    Returns:
        0 when training finished, 130 when it was interrupted (SIGINT or SIGTERM).

    """
    _stop_on_signals()
    settings = _parse(argv)
    torch.manual_seed(settings.seed)
    bar = BarProgress(settings.steps)
    try:
        run(build_cnn(), settings, "digits_cnn", bar)
    except KeyboardInterrupt:
        bar.close()
        print("Training stopped.", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
