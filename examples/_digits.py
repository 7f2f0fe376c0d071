"""Shared parts of the digits examples: data, command line, and the training loop.

The data is scikit-learn's ``load_digits`` (1797 grey 8x8 images of the digits 0-9),
which ships with scikit-learn, so the examples run offline in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

import cockpit
from cockpit.quantities import PRESETS

#: Images held out for validation (the rest, 1500, are for training).
N_VALID = 297
#: Seed of the permutation that splits train from validation; fixed so that every
#: run, whatever its ``--seed``, validates on the same images.
SPLIT_SEED = 0
#: Print a progress line every this many steps.
PRINT_EVERY = 50


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


def build_parser(description: str, lr: float) -> argparse.ArgumentParser:
    """The command line both examples share.

    Args:
        description: The example's ``--help`` text.
        lr: The example's default learning rate.

    Returns:
        The parser.

    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--logdir", default="runs", help="directory of the runs")
    parser.add_argument(
        "--run-name", default=None, help="run directory name (default: time and host)"
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step")
    parser.add_argument("--lr", type=float, default=lr, help="SGD learning rate")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="economy", help="what to track"
    )
    parser.add_argument(
        "--every",
        type=int,
        default=None,
        help="track every quantity every k-th step (default: the preset's schedules; "
        "full runs its costly curvature quantities every 10th step)",
    )
    parser.add_argument(
        "--hist-samples",
        type=int,
        default=2**20,
        help="per-sample gradient elements sampled per step for the histograms "
        "(0: all, exact); fewer is faster on a CPU",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the model init and batch order"
    )
    parser.add_argument(
        "--valid-every",
        type=int,
        default=50,
        help="log validation loss and accuracy every k steps (and after the last)",
    )
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values argparse's types let through; exits like argparse does.

    Args:
        parser: The parser that made ``args`` (reports the error).
        args: The parsed arguments.

    """
    for flag in ("steps", "batch_size", "every", "valid_every"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.hist_samples < 0:
        parser.error("--hist-samples must be >= 0 (0: exact)")
    if args.lr <= 0:
        parser.error("--lr must be > 0")


def run(model: nn.Module, args: argparse.Namespace, name: str) -> Path:
    """Train ``model`` on the digits with SGD, tracked by a Cockpit; return the run dir.

    Args:
        model: A classifier from ``(N, 1, 8, 8)`` images to 10 logits, freshly
            initialized (seed the global generator before building it).
        args: Parsed arguments of :func:`build_parser`.
        name: The example's name, stored in the run's config.

    Returns:
        The run directory, for ``cockpit.load``.

    """
    x_train, y_train, x_valid, y_valid = load_data()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    overrides = None
    if args.every is not None:
        overrides = dict.fromkeys(PRESETS[args.preset], cockpit.every(args.every))
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=args.logdir,
        run_name=args.run_name,
        preset=args.preset,
        quantities=overrides,
        hist_samples=args.hist_samples,
        seed=args.seed,
        config={
            "example": name,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "momentum": 0.9,
            "every": args.every,
            "hist_samples": args.hist_samples,
            "seed": args.seed,
            "n_train": len(y_train),
            "n_valid": len(y_valid),
        },
    )
    data = batches(x_train, y_train, args.batch_size, args.seed)
    print(f"{name}: {args.steps} steps, preset {args.preset}, logging to {ck.run_dir}")
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    valid_loss, valid_accuracy = float("nan"), float("nan")
    with ck:
        for step in range(args.steps):
            inputs, labels = next(data)
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(model(inputs), labels)
                loss.backward()
            optimizer.step()
            last = step == args.steps - 1
            if step % args.valid_every == 0 or last:
                valid_loss, valid_accuracy = evaluate(model, loss_fn, x_valid, y_valid)
                ck.log(step=step, valid_loss=valid_loss, valid_accuracy=valid_accuracy)
            if step % PRINT_EVERY == 0 or last:
                print(
                    f"step {step:5d}  loss {loss.item():.4f}  "
                    f"valid accuracy {valid_accuracy:.3f}  "
                    f"{time.perf_counter() - start:6.1f}s"
                )
    print(f"Run written to {ck.run_dir}")
    print(
        f"Final train loss {loss.item():.4f}, validation loss {valid_loss:.4f}, "
        f"validation accuracy {valid_accuracy:.3f} after {args.steps} steps "
        f"({time.perf_counter() - start:.1f}s)"
    )
    return ck.run_dir


def main(
    build_model: Callable[[], nn.Module],
    argv: Sequence[str] | None,
    description: str,
    name: str,
    lr: float,
) -> Path:
    """Parse ``argv``, build the model under ``--seed``, and :func:`run` it.

    Args:
        build_model: Callable without arguments returning a fresh model.
        argv: Command-line arguments; ``None`` reads ``sys.argv``.
        description: The ``--help`` text.
        name: The example's name.
        lr: The default learning rate.

    Returns:
        The run directory.

    """
    parser = build_parser(description, lr)
    args = parser.parse_args(argv)
    check_args(parser, args)
    torch.manual_seed(args.seed)
    return run(build_model(), args, name)
