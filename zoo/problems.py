"""The benchmark problems: models and fixed batch pools (``cockpit profile --problem``).

``benchmarks/_overhead/problems.py`` adds the library models to these.

A problem is a model builder, a batch pool and how the loss reads the model's
output (``loss_input``, ``None`` for the output itself). The pools are fixed (seeded),
so every configuration trains on the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from cockpit.zoo import models
from cockpit.zoo.digits import digits
from cockpit.zoo.text import ALPHABET, load_text, windows

__all__ = [
    "PROBLEMS",
    "Batches",
    "digit_batches",
    "noise_batches",
    "text_batches",
    "transformer",
]

SEED = 0

Batches = list[tuple[Tensor, Tensor]]
LossInput = Callable[[Any], Tensor]


def digit_batches(batch: int = 64) -> Batches:
    """The digits as ``[batch, 1, 8, 8]`` images in their fixed order, full batches."""
    x, y = digits()
    return [
        (x[i : i + batch], y[i : i + batch])
        for i in range(0, len(y) - batch + 1, batch)
    ]


def noise_batches(batch: int = 128) -> Batches:
    """4 batches of standard normal ``[3, 32, 32]`` images with random labels."""
    gen = torch.Generator().manual_seed(SEED)
    return [
        (
            torch.randn(batch, 3, 32, 32, generator=gen),
            torch.randint(0, 10, (batch,), generator=gen),
        )
        for _ in range(4)
    ]


def transformer() -> nn.Module:
    """The character transformer: 2 blocks, width 64, 4 heads, context 64."""
    return models.CharTransformer(
        len(ALPHABET), width=64, heads=4, layers=2, context=64
    )


def text_batches(batch: int = 32) -> Batches:
    """4 batches of windows of 64 characters of the standard library's source."""
    batches = windows(load_text(200_000), batch_size=batch, context=64, seed=SEED)
    return [next(batches) for _ in range(4)]


def tiny_mlp() -> nn.Module:
    """64 -> 8 -> ReLU -> 10 on flattened digits (610 parameters): for quick checks."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))


def tiny_batches() -> Batches:
    """2 batches of 16 digits."""
    return digit_batches(16)[:2]


#: Problem name: (model builder, batch pool, loss input); see ``benchmarks/overhead.py``
#: (``tiny`` is for quick checks and tests only).
PROBLEMS: dict[
    str, tuple[Callable[[], nn.Module], Callable[[], Batches], LossInput | None]
] = {
    "mlp": (models.digits_mlp, digit_batches, None),
    "3c3d": (models.cnn_3c3d, noise_batches, None),
    "transformer": (transformer, text_batches, models.class_axis_second),
    "resnet": (models.resnet_digits, digit_batches, None),
    "tiny": (tiny_mlp, tiny_batches, None),
}
