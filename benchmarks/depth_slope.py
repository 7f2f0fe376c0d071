"""What each added parameter tensor costs a tracked step, phase by phase.

Issue 12 asks that a tracked step's host work grow by no more than a few
microseconds per parameter tensor. This trains the narrow MLP of ``deep_mlp`` (width
64, batch 32) at two depths, plain and under economy, in interleaved rounds with one
intra-op thread, and prints for each phase of the step (``zero_grad``, entering
``track()``, forward, backward, leaving ``track()``, ``optimizer.step()``) the
training thread's CPU time the tracker adds per added parameter tensor:

    ((economy - plain) at the deeper MLP - (economy - plain) at the shallower)
        / (tensors added)

medians over the steps of a round, the smallest of the rounds::

    .venv/bin/python benchmarks/depth_slope.py --depths 8 64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _overhead.problems import deep_mlp
from torch import nn

import cockpit
from cockpit.quantities import PRESETS

PHASES = ["zero_grad", "enter", "forward", "backward", "exit", "optimizer"]


def phase_ms(depth: int, tracked: bool, steps: int, warmup: int) -> dict[str, float]:
    """Median CPU ms per phase of ``steps`` steps of the ``depth``-layer MLP."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=gen), torch.randint(10, (32,), generator=gen)
    torch.manual_seed(0)
    model, loss_fn = deep_mlp(depth), nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with tempfile.TemporaryDirectory() as logdir:
        ck = None
        if tracked:
            economy = dict.fromkeys(PRESETS["economy"], 1)
            ck = cockpit.Cockpit(
                model,
                loss_fn,
                optimizer,
                logdir=logdir,
                preset=None,
                quantities=economy,
            )
        times: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for step in range(warmup + steps):
            clock = [time.thread_time()]
            optimizer.zero_grad()
            clock.append(time.thread_time())
            block = ck.track() if ck is not None else None
            if block is not None:
                block.__enter__()
            clock.append(time.thread_time())
            loss = loss_fn(model(x), y)
            clock.append(time.thread_time())
            loss.backward()
            clock.append(time.thread_time())
            if block is not None:
                block.__exit__(None, None, None)
            clock.append(time.thread_time())
            optimizer.step()
            clock.append(time.thread_time())
            if step >= warmup:
                for i, phase in enumerate(PHASES):
                    times[phase].append(clock[i + 1] - clock[i])
            if ck is not None and step % 10 == 9:
                ck.writer.flush()  # the writer's work outside the timed phases
        if ck is not None:
            ck.close()
    return {phase: 1e3 * statistics.median(t) for phase, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--depths", type=int, nargs=2, default=[8, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    best: dict[tuple[int, bool], dict[str, float]] = {}
    for _ in range(args.rounds):
        for depth in args.depths:
            for tracked in (False, True):
                ms = phase_ms(depth, tracked, args.steps, args.warmup)
                kept = best.setdefault((depth, tracked), ms)
                for phase in PHASES:
                    kept[phase] = min(kept[phase], ms[phase])
    low, high = args.depths
    added = 2 * (high - low)  # a weight and a bias per added layer
    print(f"| phase | µs per added tensor | plain / economy ms at {low} and {high} |")
    print("|---|---:|---|")
    total = 0.0
    for phase in PHASES:
        extra = [best[d, True][phase] - best[d, False][phase] for d in (low, high)]
        slope = 1e3 * (extra[1] - extra[0]) / added
        total += slope
        cells = ", ".join(
            f"{best[d, False][phase]:.2f} / {best[d, True][phase]:.2f}"
            for d in (low, high)
        )
        print(f"| {phase} | {slope:.1f} | {cells} |")
    print(f"| all | {total:.1f} | |")


if __name__ == "__main__":
    main()
