"""What ``cockpit demo`` runs: the digits CNN with every quantity and a progress bar.

``cockpit demo`` starts this module in a subprocess (``python -m cockpit.zoo.demo``),
because the dashboard never imports torch. It trains
:func:`cockpit.zoo.models.digits_cnn` on scikit-learn's digits with
:func:`cockpit.zoo.training.run`, writing to ``--logdir``, and shows a ``tqdm`` bar.
Every instrument has data: the ``full`` preset plus ``early_stopping`` and ``cabs``,
which are defined for plain SGD only, so the demo trains with plain SGD
(no momentum).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import torch
from torch import Tensor
from tqdm import tqdm

from cockpit.zoo.models import digits_cnn
from cockpit.zoo.training import Settings, run

__all__ = ["DEMO_EXTRA", "BarProgress", "main"]

#: Requested by name on top of ``full``, so that every instrument has data.
DEMO_EXTRA = ("early_stopping", "cabs")


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
        prog="python -m cockpit.zoo.demo",
        description="Train a small CNN on scikit-learn's digits with the full preset, "
        "tracked by cockpit (what `cockpit demo` runs).",
    )
    parser.add_argument("--logdir", required=True, help="directory of the runs")
    parser.add_argument("--run-name", default=None, help="run directory name")
    parser.add_argument("--steps", type=int, required=True, help="training steps")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    return Settings(
        args.logdir,
        args.run_name,
        args.steps,
        preset="full",
        momentum=0.0,
        extra=DEMO_EXTRA,
    )


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
        run(digits_cnn(), settings, "digits_cnn", bar)
    except KeyboardInterrupt:
        bar.close()
        print("Training stopped.", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
