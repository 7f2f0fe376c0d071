"""Track a small character-level transformer learning Python's own source code.

A decoder-only transformer (a token embedding plus fixed sinusoidal position codes;
pre-norm blocks of causal multi-head self-attention and a GELU MLP, each with
LayerNorm and a residual connection; a final LayerNorm; the output layer tied to the
token embedding; ``cockpit.zoo.models.CharTransformer``) learns to predict the next
character of the Python standard library's source files (``cockpit.zoo.text``), which
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
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import cockpit
from cockpit.quantities import PRESETS
from cockpit.zoo.models import CharTransformer, class_axis_second
from cockpit.zoo.text import ALPHABET, load_text, windows

NAME = "char_transformer"


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
    data = windows(text, args.batch_size, args.context, args.seed)
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
