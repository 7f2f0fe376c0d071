"""Track an MLP learning scikit-learn's 8x8 digits with cockpit.

A two-hidden-layer MLP (64 -> 128 -> 64 -> 10) trained by SGD with momentum on the 1500
training images of ``sklearn.datasets.load_digits``; the tracker logs the ``economy``
preset at every step (loss, gradient norm, alpha, the gradient tests, the gradient
histogram, ...), and validation loss and accuracy every 50 steps. The model is
``cockpit.zoo.models.digits_mlp``. It needs no download and takes seconds on a CPU.
Run from the repository root::

    python examples/digits_mlp.py                      # 300 steps into runs/<name>
    python examples/digits_mlp.py --steps 20 --preset full --every 2
    python examples/digits_mlp.py --help

then read the run with ``cockpit.load("runs/<name>")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _digits import main as run_example

from cockpit.zoo.models import digits_mlp

NAME = "digits_mlp"
LR = 0.05


def main(argv: Sequence[str] | None = None) -> Path:
    """Train and track the MLP; return the run directory.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    """
    return run_example(digits_mlp, argv, (__doc__ or NAME).splitlines()[0], NAME, LR)


if __name__ == "__main__":
    main()
