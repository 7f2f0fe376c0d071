"""Real digits runs that go wrong in known ways, for the diagnosis tests.

Each :class:`Recipe` trains one of the zoo's digits models for a few hundred steps at
most (CPU seconds) with one thing broken on purpose, tracked by a Cockpit; the tests
build each run once per module (``train`` into a module-scoped temporary directory)
and check that the diagnosis names what was broken, at the right steps, and nothing
else.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cockpit
from cockpit.exceptions import CockpitWarning
from cockpit.zoo.digits import batches, train_valid
from cockpit.zoo.models import digits_cnn, digits_mlp

__all__ = ["RECIPES", "Recipe", "train"]


@dataclass(frozen=True)
class Recipe:
    """How to train one run, and what is broken in it.

    Attributes:
        model: ``"mlp"`` or ``"cnn"`` (the zoo's digits models).
        steps: Optimizer steps, every one tracked.
        lr: Learning rate.
        momentum: SGD's momentum; ``None`` trains with Adam.
        batch_size: Samples per batch.
        nan_at: Multiply the inputs by NaN at this step.
        raw_inputs: Feed the pixels as 0-16 instead of 0-1.
        shuffled_labels: Train on a fixed random permutation of the labels.
        detached: Add a linear layer that the loss never sees.
        dead_bias: Set the first hidden layer's bias to this (dead ReLUs).
        preset: The tracker's preset.
        quantities: Extra quantities, as ``Cockpit(quantities=...)`` takes them.

    """

    model: str = "mlp"
    steps: int = 60
    lr: float = 0.05
    momentum: float | None = 0.9
    batch_size: int = 64
    nan_at: int | None = None
    raw_inputs: bool = False
    shuffled_labels: bool = False
    detached: bool = False
    dead_bias: float | None = None
    preset: str = "economy"
    quantities: dict[str, Any] = field(default_factory=dict)


class _WithDetached(nn.Module):
    """A model plus a layer that is never called: its gradients stay zero."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _model(recipe: Recipe) -> nn.Module:
    torch.manual_seed(0)
    model = digits_mlp() if recipe.model == "mlp" else digits_cnn()
    if recipe.dead_bias is not None:
        first = next(
            m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
        )
        with torch.no_grad():
            first.bias.fill_(recipe.dead_bias)
    return _WithDetached(model) if recipe.detached else model


def _optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    if recipe.momentum is None:
        return torch.optim.Adam(model.parameters(), lr=recipe.lr)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)


def train(recipe: Recipe, logdir: Path, name: str) -> Path:
    """Train ``recipe`` into ``logdir/name`` and return the run directory.

    The tracker's own warnings (non-finite values, notices) are expected in runs
    that go wrong on purpose and are silenced here; everything else still raises.
    """
    x, y, _, _ = train_valid()
    if recipe.raw_inputs:
        x = x * 16.0
    if recipe.shuffled_labels:
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    model = _model(recipe)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = _optimizer(recipe, model)
    data = batches(x, y, recipe.batch_size, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CockpitWarning)
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=logdir,
            run_name=name,
            preset=recipe.preset,
            quantities=recipe.quantities or None,
        )
        with ck:
            for step in range(recipe.steps):
                inputs, labels = next(data)
                if step == recipe.nan_at:
                    inputs = inputs * math.nan
                optimizer.zero_grad()
                with ck.track():
                    loss = loss_fn(model(inputs), labels)
                    loss.backward()
                optimizer.step()
    return ck.run_dir


#: The runs of the tests, by name.
RECIPES: dict[str, Recipe] = {
    "healthy_mlp": Recipe(steps=60),
    "healthy_cnn": Recipe(model="cnn", steps=40),
    "lr_too_high": Recipe(
        lr=5.0, momentum=0.0, steps=60, quantities={"hess_max_ev": cockpit.every(5)}
    ),
    "detached": Recipe(detached=True, steps=40),
    "nan_at_30": Recipe(nan_at=30, steps=40),
    "batch_of_2": Recipe(batch_size=2, steps=60),
    "shuffled_labels": Recipe(shuffled_labels=True, steps=100),
    "dead_relus": Recipe(dead_bias=-100.0, steps=40),
    "plateau": Recipe(lr=1e-4, momentum=0.0, steps=60),
    "raw_inputs": Recipe(model="cnn", raw_inputs=True, steps=40),
}
