"""Tiny problems shared by the tests: model, loss and data factories with a seed.

Each :class:`Problem` builds everything in float64 so that comparisons against the
brute-force references in ``reference.py`` can be tight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cockpit.zoo.models import CharTransformer


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
    #: Inputs are token ids below this vocabulary size (0: Gaussian inputs).
    tokens: int = 0
    #: Per-sample shape of a classification target (sequence models).
    target_shape: tuple[int, ...] = ()

    def make(self) -> tuple[nn.Module, nn.Module]:
        """Fresh model (float64, seeded) and loss module."""
        torch.manual_seed(self.seed)
        return self.model().double(), self.loss()

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch for ``step`` (deterministic)."""
        gen = torch.Generator().manual_seed(1000 * self.seed + step)
        if self.tokens:
            shape = (self.batch_size, *self.inputs)
            x = torch.randint(0, self.tokens, shape, generator=gen)
        else:
            x = torch.randn(
                self.batch_size, *self.inputs, generator=gen, dtype=torch.float64
            )
        if self.regression:
            y = torch.randn(
                self.batch_size, self.classes, generator=gen, dtype=torch.float64
            )
        else:
            shape = (self.batch_size, *self.target_shape)
            y = torch.randint(0, self.classes, shape, generator=gen)
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


class ResidualMLP(nn.Module):
    """``x + tanh(W x)`` between two layers: BackPACK's chain of modules breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.inner = nn.Linear(4, 4)
        self.act = nn.Tanh()
        self.last = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.last(h + self.act(self.inner(h)))


def _layernorm_mlp() -> nn.Module:
    norm = nn.LayerNorm(4)
    with torch.no_grad():  # away from the identity initialization
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(nn.Linear(5, 4), norm, nn.Tanh(), nn.Linear(4, 3))


def _groupnorm_cnn() -> nn.Module:
    norm = nn.GroupNorm(2, 4)
    with torch.no_grad():  # away from the identity initialization
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), norm, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    )


class TiedMLP(nn.Module):
    """Two layers that share one weight matrix (weight tying between modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.last = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(torch.tanh(self.first(x))))
        return self.last(torch.tanh(self.b(h)))


class ReusedMLP(nn.Module):
    """One layer applied twice in the forward pass (a reused module)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 4)
        self.twice = nn.Linear(4, 4)
        self.last = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.twice(torch.tanh(self.first(x))))
        return self.last(torch.tanh(self.twice(h)))


class FunctionalTie(nn.Module):
    """An embedding whose weight also serves as output layer through ``F.linear``.

    The tie is invisible in the module structure: only the first tracked step's
    check finds that BackPACK's per-sample gradients miss the output use.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.mix = nn.Linear(3, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mix(self.embed(tokens)))
        return nn.functional.linear(h, self.embed.weight)


class ClassAxisSecond(nn.Module):
    """Wraps a sequence model: ``[N, T, V] -> [N, V, T]`` for ``CrossEntropyLoss``.

    With ``classes``, it adds a learned bias of its own to the logits: a parameter of
    a module with submodules, which only the whole-model replay can differentiate.
    """

    def __init__(self, inner: nn.Module, classes: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.bias = nn.Parameter(torch.randn(classes) * 0.1) if classes else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.inner(tokens)
        if self.bias is not None:
            logits = logits + self.bias
        return logits.transpose(1, 2)


def _transformer() -> nn.Module:
    model = CharTransformer(vocab=5, width=4, heads=4, layers=1, context=3)
    with torch.no_grad():  # LayerNorm away from its identity initialization
        for name, param in model.named_parameters():
            if ".ln" in name or name.startswith("ln"):
                param.uniform_(0.5, 1.5) if name.endswith("weight") else param.uniform_(
                    -0.5, 0.5
                )
    return ClassAxisSecond(model, classes=5)


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
    Problem("residual-ce-mean", ResidualMLP, nn.CrossEntropyLoss, (5,), 3, chain=False),
    Problem(
        "layernorm-ce-sum",
        _layernorm_mlp,
        lambda: nn.CrossEntropyLoss(reduction="sum"),
        (5,),
        3,
        chain=False,
    ),
    Problem(
        "groupnorm-cnn-ce-mean",
        _groupnorm_cnn,
        nn.CrossEntropyLoss,
        (2, 5, 5),
        3,
        chain=False,
    ),
    Problem(
        "tied-mse-mean", TiedMLP, nn.MSELoss, (5,), 3, regression=True, chain=False
    ),
    Problem("reused-ce-mean", ReusedMLP, nn.CrossEntropyLoss, (5,), 3, chain=False),
    Problem(
        "functional-tie-ce-mean",
        FunctionalTie,
        lambda: nn.CrossEntropyLoss(),
        (),
        5,
        chain=False,
        tokens=5,
    ),
    Problem(
        "transformer-ce-mean",
        _transformer,
        nn.CrossEntropyLoss,
        (3,),
        5,
        chain=False,
        tokens=5,
        target_shape=(3,),
    ),
]


def _narrow_mlp() -> nn.Module:
    """Four equal hidden layers: their weights and their biases each one group."""
    hidden = [m for _ in range(4) for m in (nn.Linear(4, 4), nn.Tanh())]
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), *hidden, nn.Linear(4, 3))


#: Equal ``Linear`` layers, reduced as group stacks (not in :data:`PROBLEMS`: the
#: tests of the stacked routes use it).
NARROW = Problem("narrow-ce-mean", _narrow_mlp, nn.CrossEntropyLoss, (5,), 3)
