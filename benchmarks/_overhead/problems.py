"""The benchmark's problems: a model and a fixed pool of batches.

The models come from ``cockpit.zoo.models``, and for the library problems from
torchvision and Hugging Face ``transformers`` (built from a constructor or a config,
random weights, nothing downloaded). Every problem's model is built once under
:data:`SEED`; each configuration then loads the same initial weights, so all of them
train along the same trajectory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cockpit.zoo.problems import PROBLEMS as ZOO_PROBLEMS
from cockpit.zoo.problems import (
    SEED,
    Batches,
    LossInput,
    digit_batches,
    noise_batches,
    text_batches,
)


def small_noise_batches() -> Batches:
    """:func:`noise_batches` of 32 images."""
    return noise_batches(32)


def small_text_batches() -> Batches:
    """:func:`text_batches` of 16 windows."""
    return text_batches(16)


def deep_mlp(depth: int = 64, width: int = 64) -> nn.Module:
    """A narrow, deep MLP: 64 -> (``Linear(width, width)`` Tanh) x ``depth`` -> 10.

    ``depth`` hidden ``Linear`` layers of ``width`` units plus the input and output
    layers: ``2 (depth + 2)`` parameter tensors of a few thousand entries each, so the
    step costs little arithmetic and the tracker's work per parameter tensor shows.
    Orthogonal weights (gain 1) and zero biases keep the signal alive through 64
    layers: with PyTorch's default initialization the activations shrink to subnormal
    floats (whose slow arithmetic, not the model, would set the step time), and with
    ReLU the outputs of all samples collapse onto one and the first layers' gradients
    vanish.
    """
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, width), nn.Tanh()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def small_digit_batches() -> Batches:
    """:func:`digit_batches` of 32 images."""
    return digit_batches(32)


def resnet18() -> nn.Module:
    """torchvision's ResNet-18 with BatchNorm (11 M parameters), 10 classes."""
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=10)


def gpt2() -> nn.Module:
    """Hugging Face GPT-2 from a config: 4 layers, 4 heads, width 128, context 64,
    256 tokens (the characters' codes), dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=4,
        n_head=4,
        n_embd=128,
        vocab_size=256,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def gpt2_small() -> nn.Module:
    """Hugging Face GPT-2 small from its default config (12 layers, 12 heads, width
    768, 50,257 tokens, context 1024: 124 M parameters), dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def token_batches(batch: int = 8, context: int = 512, vocab: int = 50257) -> Batches:
    """4 batches of ``batch`` x ``context`` uniformly random token ids, each window's
    next tokens as its targets (GPT-2 small's shapes; random text, since nothing is
    downloaded)."""
    gen = torch.Generator().manual_seed(SEED)
    windows = [
        torch.randint(0, vocab, (batch, context + 1), generator=gen) for _ in range(4)
    ]
    return [(w[:, :-1], w[:, 1:]) for w in windows]


def lm_logits(out: Any) -> Tensor:
    """A Hugging Face LM's ``[N, T, V]`` logits as ``[N, V, T]`` for the loss."""
    return out.logits.transpose(1, 2)


def vit() -> nn.Module:
    """torchvision's VisionTransformer: 32x32 images in 4x4 patches, 4 layers, 4
    heads, width 128, MLP 256, 10 classes."""
    from torchvision.models import VisionTransformer

    return VisionTransformer(
        image_size=32,
        patch_size=4,
        num_layers=4,
        num_heads=4,
        hidden_dim=128,
        mlp_dim=256,
        num_classes=10,
    )


#: Problem name: (model builder, batch pool, loss input).
FACTORIES: dict[
    str, tuple[Callable[[], nn.Module], Callable[[], Batches], LossInput | None]
] = {
    **ZOO_PROBLEMS,
    "deep_mlp": (deep_mlp, small_digit_batches, None),
    "resnet18": (resnet18, small_noise_batches, None),
    "gpt2": (gpt2, small_text_batches, lm_logits),
    "vit": (vit, small_noise_batches, None),
    # The GPU problems of issue 12: CIFAR-sized batches of 128 and GPT-2 small.
    "resnet18_cifar": (resnet18, noise_batches, None),
    "gpt2_small": (gpt2_small, token_batches, lm_logits),
}
PROBLEMS = list(FACTORIES)
#: Run without ``--problems``: the library problems need the test extra's frameworks.
DEFAULT_PROBLEMS = ["mlp", "3c3d", "transformer", "resnet", "deep_mlp"]


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
