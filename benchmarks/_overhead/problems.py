"""The benchmark's problems: a model from ``cockpit.zoo.models`` and a fixed pool of batches.

Every problem's model is built once under :data:`SEED`; each configuration then loads
the same initial weights, so all of them train along the same trajectory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cockpit.zoo import models
from cockpit.zoo.digits import digits
from cockpit.zoo.text import ALPHABET, load_text, windows

SEED = 0

Batches = list[tuple[Tensor, Tensor]]
LossInput = Callable[[Tensor], Tensor]


def digit_batches(batch: int = 64) -> Batches:
    """The digits as ``[batch, 1, 8, 8]`` images in their fixed order, full batches."""
    x, y = digits()
    return [
        (x[i : i + batch], y[i : i + batch])
        for i in range(0, len(y) - batch + 1, batch)
    ]


def noise_batches() -> Batches:
    """4 batches of 128 standard normal ``[3, 32, 32]`` images with random labels."""
    gen = torch.Generator().manual_seed(SEED)
    return [
        (
            torch.randn(128, 3, 32, 32, generator=gen),
            torch.randint(0, 10, (128,), generator=gen),
        )
        for _ in range(4)
    ]


def transformer() -> nn.Module:
    """The character transformer: 2 blocks, width 64, 4 heads, context 64."""
    return models.CharTransformer(
        len(ALPHABET), width=64, heads=4, layers=2, context=64
    )


def text_batches() -> Batches:
    """4 batches of 32 windows of 64 characters of the standard library's source."""
    batches = windows(load_text(200_000), batch_size=32, context=64, seed=SEED)
    return [next(batches) for _ in range(4)]


#: Problem name: (model builder, batch pool, loss input).
FACTORIES: dict[
    str, tuple[Callable[[], nn.Module], Callable[[], Batches], LossInput | None]
] = {
    "mlp": (models.digits_mlp, digit_batches, None),
    "3c3d": (models.cnn_3c3d, noise_batches, None),
    "transformer": (transformer, text_batches, models.class_axis_second),
    "resnet": (models.resnet_digits, digit_batches, None),
}
PROBLEMS = list(FACTORIES)


@dataclass
class Problem:
    """A model builder, its initial weights, the batches on the device."""

    name: str
    make_model: Callable[[], nn.Module]
    initial: dict[str, Tensor]
    batches: Batches
    n_params: int
    loss_input: LossInput | None = None


def make_problem(name: str, device: torch.device) -> Problem:
    """Build the model under :data:`SEED`, keep its weights, move the batches."""
    make_model, make_batches, loss_input = FACTORIES[name]
    torch.manual_seed(SEED)
    model = make_model()
    initial = copy.deepcopy(model.state_dict())
    batches = [(x.to(device), y.to(device)) for x, y in make_batches()]
    n_params = sum(p.numel() for p in model.parameters())
    return Problem(name, make_model, initial, batches, n_params, loss_input)
