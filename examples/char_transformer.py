"""Track a small character-level transformer learning Python's own source code.

A decoder-only transformer (a token embedding plus fixed sinusoidal position codes;
pre-norm blocks of causal multi-head self-attention and a GELU MLP, each with
LayerNorm and a residual connection; a final LayerNorm; the output layer tied to the
token embedding) learns
to predict the next character of the Python standard library's source files, which
ship with every Python installation, so nothing is downloaded. It is trained by Adam
and tracked with the ``business`` preset: the first-order statistics plus the
Hessian trace and the TIC. BackPACK has no per-sample gradients for LayerNorm or a
weight shared by two modules, and its curvature cannot pass the residual
connections, so the tracker's ``auto`` engine uses BackPACK for the linear layers,
torch.func on each LayerNorm's and the tied embedding's own calls, and a torch.func
replay of the model for the curvature (the line it prints at the start says which
engine handles what). A learned position embedding added by the model itself
(``x + self.pos``) would need the whole-model replay for its per-sample gradients
too, at about one more forward and backward pass per step. Run from the repository
root::

    python examples/char_transformer.py                  # 300 steps into runs/<name>
    python examples/char_transformer.py --steps 50 --preset economy
    python examples/char_transformer.py --help

The model returns logits ``[N, T, V]``; ``CrossEntropyLoss`` takes the class axis
second, so the loop passes ``logits.transpose(1, 2)`` and tells the tracker the same
with ``loss_input=``.
"""

from __future__ import annotations

import argparse
import math
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

import cockpit
from cockpit.quantities import PRESETS

NAME = "char_transformer"

#: Characters the model knows; anything else in the text becomes "?".
ALPHABET = "\n\t" + "".join(chr(c) for c in range(32, 127))


def class_axis_second(logits: Tensor) -> Tensor:
    """``[N, T, V] -> [N, V, T]``: what ``CrossEntropyLoss`` takes for sequences."""
    return logits.transpose(1, 2)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions up to t."""

    def __init__(self, width: int, heads: int, context: int):
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
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int, context: int):
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

    The output layer shares its weight with the token embedding (weight tying).
    """

    def __init__(
        self,
        vocab: int,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
        context: int = 64,
    ):
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


def load_text(characters: int) -> Tensor:
    """The first ``characters`` characters of the standard library's ``*.py`` files.

    Files are taken in name order from the running Python's ``stdlib`` directory,
    so the text is the same for the same Python version.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    index = {c: i for i, c in enumerate(ALPHABET)}
    unknown = index["?"]
    codes: list[int] = []
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        codes.extend(index.get(c, unknown) for c in text)
        if len(codes) >= characters:
            break
    if len(codes) < 2:
        raise RuntimeError(f"No Python sources found under {stdlib}.")
    return torch.tensor(codes[:characters])


def batches(text: Tensor, batch_size: int, context: int, seed: int):
    """Endless random windows: inputs ``[N, T]`` and next characters ``[N, T]``."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(len(text) - context - 1, (batch_size,), generator=gen)
        windows = torch.stack([text[s : s + context + 1] for s in starts.tolist()])
        yield windows[:, :-1], windows[:, 1:]


def build_parser() -> argparse.ArgumentParser:
    """The example's command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or NAME).splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--logdir", default="runs", help="directory of the runs")
    parser.add_argument("--run-name", default=None, help="run directory name")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    parser.add_argument("--context", type=int, default=64, help="characters per window")
    parser.add_argument("--width", type=int, default=64, help="embedding width")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="business", help="what to track"
    )
    parser.add_argument(
        "--characters", type=int, default=500_000, help="characters of text to use"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of init and batches")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Train and track the transformer; return the run directory.

    Args:
        argv: Command-line arguments; ``None`` reads ``sys.argv``.

    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("steps", "batch_size", "context", "width", "layers", "characters"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.width % 4:
        parser.error("--width must be a multiple of the 4 attention heads")
    torch.manual_seed(args.seed)
    text = load_text(args.characters)
    if len(text) < args.context + 2:
        parser.error("--characters must exceed --context + 1")
    model = CharTransformer(
        len(ALPHABET), args.width, heads=4, layers=args.layers, context=args.context
    )
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    config = {key: value for key, value in vars(args).items() if key != "logdir"}
    ck = cockpit.Cockpit(
        model,
        loss_fn,
        optimizer,
        logdir=args.logdir,
        run_name=args.run_name,
        preset=args.preset,
        quantities={"alpha": None},  # alpha is defined for plain SGD only
        loss_input=class_axis_second,
        seed=args.seed,
        config={**config, "example": NAME, "text_characters": len(text)},
    )
    print(f"{NAME}: {args.steps} steps, preset {args.preset}, logging to {ck.run_dir}")
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    data = batches(text, args.batch_size, args.context, args.seed)
    with ck:
        for step in range(args.steps):
            inputs, targets = next(data)
            optimizer.zero_grad()
            with ck.track():
                loss = loss_fn(class_axis_second(model(inputs)), targets)
                loss.backward()
            optimizer.step()
            if step % 50 == 0 or step == args.steps - 1:
                print(
                    f"step {step:5d}  loss {loss.item():.4f}  "
                    f"{time.perf_counter() - start:6.1f}s"
                )
    print(f"Run written to {ck.run_dir}")
    print(f"Final train loss {loss.item():.4f} after {args.steps} steps")
    return ck.run_dir


if __name__ == "__main__":
    main()
