"""Track a small CNN learning scikit-learn's 8x8 digits with cockpit.

Two 3x3 convolution blocks (16 and 32 channels, each ReLU and 2x2 max-pooling, so
8x8 -> 4x4 -> 2x2) and two linear layers, trained by SGD with momentum on the 1500
training images of ``sklearn.datasets.load_digits``. It shows the tracker's per-sample
statistics on convolutions: the per-layer gradient norms, the gradient tests and
the histograms cover the ``Conv2d`` weights as well as the ``Linear`` ones. Validation
loss and accuracy are logged every 50 steps. It needs no download and takes seconds on a
CPU. The model (``cockpit.zoo.models.digits_cnn``) and the training loop
(``cockpit.zoo.training``) are the ones ``cockpit demo`` runs with the ``full`` preset. Run from the repository root::

    python examples/digits_cnn.py                      # 300 steps into runs/<name>
    python examples/digits_cnn.py --steps 20 --preset full --every 2
    python examples/digits_cnn.py --help

then read the run with ``cockpit.load("runs/<name>")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _digits import main as run_example

from cockpit.zoo.models import digits_cnn
from cockpit.zoo.training import LR

NAME = "digits_cnn"


def main(argv: Sequence[str] | None = None) -> Path:
    """Train and track the CNN; return the run directory.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    """
    return run_example(digits_cnn, argv, (__doc__ or NAME).splitlines()[0], NAME, LR)


if __name__ == "__main__":
    main()
