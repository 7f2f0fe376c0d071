"""Tiny problems shared by the tests: model, loss and data factories with a seed.

Each :class:`Problem` builds everything in float64 so that comparisons against the
brute-force references in ``reference.py`` can be tight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class SequenceMLP(nn.Module):
    """Linear layers applied to ``[N, T, d]`` inputs (exercises the unfactored path)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 4)
        self.outer = nn.Linear(4 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(x)).flatten(1))


@dataclass(frozen=True)
class Problem:
    """A model, a loss and a batch factory."""

    name: str
    model: Callable[[], nn.Module]
    loss: Callable[[], nn.Module]
    inputs: tuple[int, ...]
    classes: int
    regression: bool = False
    batch_size: int = 6
    seed: int = 0
    #: The forward pass is a chain of modules, as BackPACK's second-order extensions
    #: need (a functional op between layers is not).
    chain: bool = True

    def make(self) -> tuple[nn.Module, nn.Module]:
        """Fresh model (float64, seeded) and loss module."""
        torch.manual_seed(self.seed)
        return self.model().double(), self.loss()

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch for ``step`` (deterministic)."""
        gen = torch.Generator().manual_seed(1000 * self.seed + step)
        x = torch.randn(
            self.batch_size, *self.inputs, generator=gen, dtype=torch.float64
        )
        if self.regression:
            y = torch.randn(
                self.batch_size, self.classes, generator=gen, dtype=torch.float64
            )
        else:
            y = torch.randint(0, self.classes, (self.batch_size,), generator=gen)
        return x, y


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.ReLU(inplace=True),  # in-place on a tracked layer's output must work
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 3),
    )


def _strided_cnn() -> nn.Module:
    """Few output positions per channel: the engine unfolds instead of BatchGrad."""
    return nn.Sequential(
        nn.Conv2d(2, 2, 1),  # so that the unfolded layer's input requires grad
        nn.Conv2d(2, 10, 3, stride=2, padding=1, dilation=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(10 * 3 * 3, 3),
    )


PROBLEMS = [
    Problem("mlp-ce-mean", _mlp, lambda: nn.CrossEntropyLoss(), (5,), 3),
    Problem("mlp-ce-sum", _mlp, lambda: nn.CrossEntropyLoss(reduction="sum"), (5,), 3),
    Problem("mlp-mse-mean", _mlp, lambda: nn.MSELoss(), (5,), 3, regression=True),
    Problem(
        "mlp-mse-sum",
        _mlp,
        lambda: nn.MSELoss(reduction="sum"),
        (5,),
        3,
        regression=True,
    ),
    Problem("cnn-ce-mean", _cnn, lambda: nn.CrossEntropyLoss(), (2, 5, 5), 3),
    Problem(
        "cnn-mse-sum", _cnn, lambda: nn.MSELoss(reduction="sum"), (2, 5, 5), 3, True
    ),
    Problem(
        "cnn-unfold-ce-sum",
        _strided_cnn,
        lambda: nn.CrossEntropyLoss(reduction="sum"),
        (2, 5, 5),
        3,
    ),
    Problem(
        "seq-ce-mean",
        SequenceMLP,
        lambda: nn.CrossEntropyLoss(),
        (2, 3),
        3,
        chain=False,
    ),
]
