"""The small models that the examples, the demo, the benchmarks and the tests train.

Each builder creates its layers in a fixed order, so that the same global seed gives
the same initial weights wherever the model is built. Shapes are given per batch of
``N`` samples:

* :func:`digits_mlp`: ``[N, 1, 8, 8]`` (or ``[N, 64]``) digits -> ``[N, 10]`` logits.
* :func:`digits_cnn`: ``[N, 1, 8, 8]`` -> ``[N, 10]``, two convolution blocks.
* :func:`resnet_digits`: ``[N, 1, 8, 8]`` -> ``[N, 10]``, residual with GroupNorm.
* :func:`cnn_3c3d`: ``[N, 3, 32, 32]`` -> ``[N, 10]``, DeepOBS's 3c3d.
* :class:`CharTransformer`: ``[N, T]`` tokens -> ``[N, T, vocab]`` logits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "Block",
    "CausalSelfAttention",
    "CharTransformer",
    "ResidualBlock",
    "class_axis_second",
    "cnn_3c3d",
    "digits_cnn",
    "digits_mlp",
    "resnet_digits",
    "sinusoidal_positions",
]


def digits_mlp() -> nn.Module:
    """An MLP on the 8x8 digits: 64 -> 128 -> ReLU -> 64 -> ReLU -> 10.

    The input is flattened first, so ``[N, 1, 8, 8]`` images and ``[N, 64]`` rows both
    work; 17,226 parameters.
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def digits_cnn() -> nn.Module:
    """A small CNN on ``[N, 1, 8, 8]`` images, 10 logits (the demo's model).

    Two 3x3 convolution blocks (16 and 32 channels, each ReLU and 2x2 max-pooling, so
    8x8 -> 4x4 -> 2x2) and two linear layers (128 -> 64 -> 10); 13,706 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


class ResidualBlock(nn.Module):
    """Pre-activation residual block: ``skip(x) + conv(relu(gn(conv(relu(gn(x))))))``.

    Both convolutions are 3x3 (the first with ``stride``), both normalizations are
    GroupNorm with 4 groups. The skip path is the identity, or a 1x1 convolution with
    ``stride`` when the shape changes: ``[N, C_in, H, W] -> [N, C_out, H/s, W/s]``.

    Args:
        channels_in: Input channels (a multiple of 4).
        channels_out: Output channels (a multiple of 4).
        stride: Stride of the first convolution and of the skip path.

    """

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(4, channels_in),
            nn.ReLU(),
            nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1),
            nn.GroupNorm(4, channels_out),
            nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1),
        )
        self.skip = (
            nn.Identity()
            if channels_in == channels_out and stride == 1
            else nn.Conv2d(channels_in, channels_out, 1, stride=stride)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def resnet_digits() -> nn.Module:
    """A residual network with GroupNorm on ``[N, 1, 8, 8]`` images, 10 logits.

    A 3x3 convolution stem (16 channels), a :class:`ResidualBlock` at 16 channels and
    one at 32 channels with stride 2 (8x8 -> 4x4), ReLU, global average pooling and a
    linear layer; 19,722 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        ResidualBlock(16, 16),
        ResidualBlock(16, 32, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def cnn_3c3d() -> nn.Module:
    """DeepOBS's 3c3d CNN on ``[N, 3, 32, 32]`` images, 10 logits; 895,210 parameters.

    ::

        Conv2d(3, 64, 5) ReLU MaxPool2d(2)                    32 -> 28 -> 14
        Conv2d(64, 96, 3) ReLU MaxPool2d(2)                   14 -> 12 -> 6
        Conv2d(96, 128, 3, padding=1) ReLU MaxPool2d(2)        6 -> 6 -> 3
        Flatten Linear(1152, 512) ReLU Linear(512, 256) ReLU Linear(256, 10)
    """
    return nn.Sequential(
        nn.Conv2d(3, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(96, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 3 * 3, 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def class_axis_second(logits: Tensor) -> Tensor:
    """``[N, T, V] -> [N, V, T]``: what ``CrossEntropyLoss`` takes for sequences."""
    return logits.transpose(1, 2)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions up to t.

    ``[N, T, width] -> [N, T, width]`` for ``T <= context``; one linear layer makes
    queries, keys and values, another mixes the heads.

    Args:
        width: Embedding width, a multiple of ``heads``.
        heads: Attention heads.
        context: Longest sequence (size of the causal mask).

    """

    def __init__(self, width: int, heads: int, context: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        mask = torch.ones(context, context, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n, t, width = x.shape
        q, k, v = (
            self.qkv(x)
            .view(n, t, 3, self.heads, width // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        mixed = scores.softmax(-1) @ v  # [N, heads, T, width / heads]
        return self.proj(mixed.transpose(1, 2).reshape(n, t, width))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``.

    The MLP is ``width -> 4 width -> GELU -> width``; shapes ``[N, T, width]`` in and
    out. The arguments are :class:`CausalSelfAttention`'s.
    """

    def __init__(self, width: int, heads: int, context: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, context)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def sinusoidal_positions(context: int, width: int) -> Tensor:
    """``[context, width]`` fixed position codes (Vaswani et al. 2017).

    Column pairs ``(2i, 2i+1)`` hold ``sin`` and ``cos`` of ``t / 10000^(2i/width)``.
    """
    position = torch.arange(context, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    codes = torch.zeros(context, width)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
    return codes


class CharTransformer(nn.Module):
    """Decoder-only transformer from ``[N, T]`` tokens to ``[N, T, vocab]`` logits.

    A token embedding plus fixed :func:`sinusoidal_positions`, ``layers`` pre-norm
    :class:`Block` s, a final LayerNorm and an output layer that shares its weight
    with the token embedding (weight tying). With the defaults and the 99 characters
    of :data:`cockpit.zoo.text.ALPHABET`: 106,304 parameters.

    Args:
        vocab: Number of tokens.
        width: Embedding width, a multiple of ``heads``.
        heads: Attention heads per block.
        layers: Transformer blocks.
        context: Longest sequence ``T``.

    """

    def __init__(
        self,
        vocab: int,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
        context: int = 64,
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        nn.init.normal_(self.tok.weight, std=0.02)  # also the output layer's weight
        self.register_buffer("pos", sinusoidal_positions(context, width), False)
        self.blocks = nn.Sequential(
            *[Block(width, heads, context) for _ in range(layers)]
        )
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.tok(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.ln(self.blocks(x)))
