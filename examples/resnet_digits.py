"""Track a small residual network learning scikit-learn's 8x8 digits with cockpit.

A 3x3 convolution stem (16 channels), two residual blocks ``x + conv(relu(gn(conv(
relu(gn(x))))))`` with GroupNorm, the second one at 32 channels and stride 2 (with a
1x1 convolution on the skip path), global average pooling and a linear layer, trained
by SGD with momentum on the 1500 training images of ``load_digits``. The residual
additions break the chain of modules that BackPACK's second-order extensions need,
and BackPACK has no per-sample gradients for GroupNorm: the tracker's ``auto`` engine
keeps BackPACK for the convolutions' and the linear layer's per-sample gradients and
uses torch.func for GroupNorm and for the curvature (the line it prints at the start
says which engine handles what). The model is ``cockpit.zoo.models.resnet_digits``.
Runs offline in seconds on a CPU. Run from the repository root::

    python examples/resnet_digits.py                         # 300 steps, economy
    python examples/resnet_digits.py --steps 100 --preset business
    python examples/resnet_digits.py --help
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _digits import main as run_example

from cockpit.zoo.models import resnet_digits

NAME = "resnet_digits"
LR = 0.05


def main(argv: Sequence[str] | None = None) -> Path:
    """Train and track the residual network; return the run directory.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    """
    return run_example(resnet_digits, argv, (__doc__ or NAME).splitlines()[0], NAME, LR)


if __name__ == "__main__":
    main()
