"""Track an MLP learning scikit-learn's 8x8 digits with cockpit.

A two-hidden-layer MLP (64 -> 128 -> 64 -> 10) trained by SGD with momentum on the 1500
training images of ``sklearn.datasets.load_digits``; the tracker logs the ``economy``
preset at every step (loss, gradient norm, alpha, the gradient tests, the gradient
histogram, ...), and validation loss and accuracy every 50 steps. It needs no download
and takes seconds on a CPU. Run from the repository root::

    python examples/digits_mlp.py                      # 300 steps into runs/<name>
    python examples/digits_mlp.py --steps 20 --preset full --every 2
    python examples/digits_mlp.py --help

then read the run with ``cockpit.load("runs/<name>")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _digits import main as run_example
from torch import nn

NAME = "digits_mlp"
LR = 0.05


def build_model() -> nn.Module:
    """The MLP: flatten the 8x8 image, two ReLU hidden layers, 10 logits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def main(argv: Sequence[str] | None = None) -> Path:
    """Train and track the MLP; return the run directory.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    """
    return run_example(build_model, argv, (__doc__ or NAME).splitlines()[0], NAME, LR)


if __name__ == "__main__":
    main()
