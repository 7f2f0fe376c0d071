"""Tracker overhead on library models: a tiny Hugging Face GPT-2 and Llama.

Step time with a Cockpit (``preset="economy"`` by default, every step tracked) as a
ratio to plain training of the same model in the same process. Rounds alternate
plain and tracked blocks of ``--steps`` steps after ``--warmup`` untimed steps; the
ratio of each round is tracked median / plain median, and the median over rounds
is reported, with the engine line (which engine handles which parameter)::

    .venv/bin/python benchmarks/library_layers.py
    .venv/bin/python benchmarks/library_layers.py --models gpt2 --rounds 3
    .venv/bin/python benchmarks/library_layers.py --preset full

Models are built from configs only (no downloads), batch 16 of 16 random tokens,
``CrossEntropyLoss`` on ``logits.transpose(1, 2)``, plain SGD. ``gpt2-positions``
is the GPT-2 called with ``position_ids`` that carry the batch dimension
(``arange(T).expand(N, T)``), so its position embedding needs no replay.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

import cockpit

BATCH, LENGTH, VOCAB = 16, 16, 50


def build(name: str) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if name.startswith("gpt2"):
        config = GPT2Config(
            n_layer=2, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=LENGTH
        )
        return GPT2LMHeadModel(config)
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=LENGTH,
    )
    return LlamaForCausalLM(config)


def step_fn(name: str, model: nn.Module, loss_fn: nn.Module, optimizer, ck=None):
    tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=torch.Generator())
    kwargs = {}
    if name == "gpt2-positions":
        kwargs["position_ids"] = torch.arange(LENGTH).expand(BATCH, LENGTH)

    def one() -> None:
        optimizer.zero_grad()
        with ck.track() if ck is not None else contextlib.nullcontext():
            logits = model(tokens, **kwargs).logits
            loss_fn(logits.transpose(1, 2), tokens).backward()
        optimizer.step()

    return one


def timed(one, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        one()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, preset: str, rounds: int, steps: int, warmup: int) -> None:
    loss_fn = nn.CrossEntropyLoss()
    plain_model, tracked_model = build(name), build(name)
    plain = step_fn(
        name, plain_model, loss_fn, torch.optim.SGD(plain_model.parameters(), lr=0.01)
    )
    optimizer = torch.optim.SGD(tracked_model.parameters(), lr=0.01)
    with tempfile.TemporaryDirectory() as logdir:
        ck = cockpit.Cockpit(
            tracked_model,
            loss_fn,
            optimizer,
            logdir=logdir,
            preset=preset,
            loss_input=lambda out: out.logits.transpose(1, 2),
        )
        tracked = step_fn(name, tracked_model, loss_fn, optimizer, ck)
        ratios, plains = [], []
        for _ in range(rounds):
            base = timed(plain, steps, warmup)
            ratios.append(timed(tracked, steps, warmup) / base)
            plains.append(base)
        ck.close()
        moved = ck.engines.replay
    print(
        f"{name:15s} {preset:8s} plain {1e3 * statistics.median(plains):6.1f} ms  "
        f"tracked/plain median {statistics.median(ratios):5.2f}  "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        + (f"  replay: {len(moved)} parameters" if moved else ""),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["gpt2", "gpt2-positions", "llama"]
    )
    parser.add_argument("--preset", default="economy")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    torch.set_num_threads(1)
    for name in args.models:
        measure(name, args.preset, args.rounds, args.steps, args.warmup)


if __name__ == "__main__":
    main()
