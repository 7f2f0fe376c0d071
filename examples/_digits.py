"""Shared parts of the digits examples: the command line and the progress lines.

The data (scikit-learn's ``load_digits``, 1797 grey 8x8 images of the digits 0-9, which
ships with scikit-learn, so the examples run offline in seconds on a CPU), the models
and the tracked training loop live in ``cockpit.zoo``, whose loop ``cockpit demo`` runs
too.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cockpit.quantities import PRESETS
from cockpit.tracker import HIST_SAMPLES
from cockpit.zoo.training import Settings, run

#: Print a progress line every this many steps.
PRINT_EVERY = 50


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
        default=HIST_SAMPLES,
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


class PrintProgress:
    """Prints the loss and validation accuracy every ``every`` steps and after the last.

    Args:
        steps: Steps of the run.
        every: Steps between two lines.

    """

    def __init__(self, steps: int, every: int = PRINT_EVERY) -> None:
        self.steps = steps
        self.every = every
        self.start = time.perf_counter()

    def __call__(self, step: int, loss: Tensor, valid_accuracy: float) -> None:
        if step % self.every == 0 or step == self.steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.4f}  "
                f"valid accuracy {valid_accuracy:.3f}  "
                f"{time.perf_counter() - self.start:6.1f}s"
            )


def main(
    build_model: Callable[[], nn.Module],
    argv: Sequence[str] | None,
    description: str,
    name: str,
    lr: float,
) -> Path:
    """Parse ``argv``, build the model under ``--seed``, and train it.

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
    settings = Settings(**vars(args))
    return run(build_model(), settings, name, PrintProgress(args.steps))
