"""A Hugging Face GPT-2 from a config, trained by the ``Trainer``, tracked by cockpit.

A two-layer GPT-2 (random weights, nothing downloaded) learns the characters of the
Python standard library's source files (``cockpit.zoo.text``); ``CockpitTrainer``
with a ``CockpitCallback`` tracks every step with exact per-sample losses and writes
the run to ``--logdir``. About 30 s of CPU time (single process)::

    python examples/huggingface_gpt2.py --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from _trainers import build_parser as trainer_parser
from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments

from cockpit.integrations.huggingface import CockpitCallback, CockpitTrainer
from cockpit.zoo.text import ALPHABET, load_text

NAME = "huggingface_gpt2"
CONTEXT = 32
VALID = 16  # held-out windows


def build_parser() -> argparse.ArgumentParser:
    """The shared flags and how many steps it trains."""
    parser = trainer_parser(__doc__.splitlines()[0], batch_size=16, lr=3e-3)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps")
    return parser


def character_windows(count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` consecutive windows of :data:`CONTEXT` characters, as the Trainer's
    examples: ``input_ids``, ``labels`` (the same ids: the model predicts the next
    one) and ``position_ids``, which spare cockpit a second pass for GPT-2's position
    embedding (README, "Any model: the engines")."""
    text = load_text(count * CONTEXT).reshape(count, CONTEXT)
    positions = torch.arange(CONTEXT)
    return [
        {"input_ids": ids, "labels": ids, "position_ids": positions} for ids in text
    ]


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Train and track; returns the run directory."""
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=len(ALPHABET),
        n_positions=CONTEXT,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    windows = character_windows(args.steps * args.batch_size + VALID)
    callback = CockpitCallback(
        logdir=args.logdir,
        run_name=args.run_name,
        preset=args.preset,
        config={"example": NAME, **vars(args)},
    )
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = CockpitTrainer(
            model=GPT2LMHeadModel(config),
            args=TrainingArguments(
                output_dir=output_dir,
                max_steps=args.steps,
                per_device_train_batch_size=args.batch_size,
                per_device_eval_batch_size=VALID,
                learning_rate=args.lr,
                seed=args.seed,
                use_cpu=True,
                report_to="none",
                save_strategy="no",
                logging_strategy="no",
                eval_strategy="steps",
                eval_steps=max(args.steps // 2, 1),
                disable_tqdm=True,
            ),
            train_dataset=windows[VALID:],
            eval_dataset=windows[:VALID],
            callbacks=[callback],
        )
        trainer.train()
    print(f"Run written to {callback.run_dir}")
    return callback.run_dir


if __name__ == "__main__":
    main()
