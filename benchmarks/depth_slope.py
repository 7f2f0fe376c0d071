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

``--count ops`` counts instead the ATen operations each phase dispatches, and
``--count calls`` the Python function calls the training thread makes in it
(``sys.setprofile``; the writer thread's are not counted): host work per added
tensor that CPU contention does not move::

    .venv/bin/python benchmarks/depth_slope.py --count ops --rounds 1 --steps 5
    .venv/bin/python benchmarks/depth_slope.py --count calls --rounds 1 --steps 5

``--width`` sets the layers' width (default 64): at ``--width 4`` a layer's
arithmetic is a few hundred multiply-adds, and the time per added tensor is the
host work alone (Python and the operations' dispatch), not the larger stacks'
arithmetic that a wider layer adds to it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import torch
from _overhead.problems import deep_mlp
from op_count import _Counter
from torch import nn

import cockpit
from cockpit.quantities import PRESETS

PHASES = ["zero_grad", "enter", "forward", "backward", "exit", "optimizer"]
#: ``--count`` -> the units of the slope and of a phase's reading, and the slope's
#: factor from the reading's unit.
UNITS = {
    None: ("µs", "ms", 1e3),
    "ops": ("ATen ops", "ops", 1),
    "calls": ("Python calls", "calls", 1),
}


@contextlib.contextmanager
def meter(count: str | None) -> Iterator[Callable[[], float]]:
    """A reading that grows with the training thread's work while this is active.

    ``None``: its CPU milliseconds; ``"ops"``: ATen operations dispatched;
    ``"calls"``: Python function calls.
    """
    if count is None:
        yield lambda: 1e3 * time.thread_time()
    elif count == "ops":
        with _Counter() as counter:
            yield lambda: counter.count
    else:
        calls = [0]

        def profile(frame, event, arg) -> None:
            if event == "call":
                calls[0] += 1

        sys.setprofile(profile)
        try:
            yield lambda: calls[0]
        finally:
            sys.setprofile(None)


def phase_ms(
    depth: int,
    tracked: bool,
    steps: int,
    warmup: int,
    count: str | None = None,
    width: int = 64,
) -> dict[str, float]:
    """Median CPU ms (or counts, :func:`meter`) per phase of ``steps`` steps."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 64, generator=gen), torch.randint(10, (32,), generator=gen)
    torch.manual_seed(0)
    model, loss_fn = deep_mlp(depth, width), nn.CrossEntropyLoss()
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
            with meter(count) as reading:
                clock = _timed_step(reading, model, loss_fn, optimizer, ck, x, y)
            if step >= warmup:
                for i, phase in enumerate(PHASES):
                    times[phase].append(clock[i + 1] - clock[i])
            if ck is not None and step % 10 == 9:
                ck.writer.flush()  # the writer's work outside the timed phases
        if ck is not None:
            ck.close()
    return {phase: statistics.median(t) for phase, t in times.items()}


def _timed_step(reading, model, loss_fn, optimizer, ck, x, y) -> list[float]:
    """One training step, the reading before it and after each phase."""
    clock = [reading()]
    optimizer.zero_grad()
    clock.append(reading())
    block = ck.track() if ck is not None else None
    if block is not None:
        block.__enter__()
    clock.append(reading())
    loss = loss_fn(model(x), y)
    clock.append(reading())
    loss.backward()
    clock.append(reading())
    if block is not None:
        block.__exit__(None, None, None)
    clock.append(reading())
    optimizer.step()
    clock.append(reading())
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--depths", type=int, nargs=2, default=[8, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--count", choices=["ops", "calls"], help="count, not time")
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    best: dict[tuple[int, bool], dict[str, float]] = {}
    for _ in range(args.rounds):
        for depth in args.depths:
            for tracked in (False, True):
                ms = phase_ms(
                    depth, tracked, args.steps, args.warmup, args.count, args.width
                )
                kept = best.setdefault((depth, tracked), ms)
                for phase in PHASES:
                    kept[phase] = min(kept[phase], ms[phase])
    low, high = args.depths
    added = 2 * (high - low)  # a weight and a bias per added layer
    per, whole, factor = UNITS[args.count]
    print(
        f"| phase | {per} per added tensor | plain / economy {whole} at {low} and {high} |"
    )
    print("|---|---:|---|")
    total = 0.0
    for phase in PHASES:
        extra = [best[d, True][phase] - best[d, False][phase] for d in (low, high)]
        slope = factor * (extra[1] - extra[0]) / added
        total += slope
        cells = ", ".join(
            f"{best[d, False][phase]:.{2 if factor > 1 else 0}f} / "
            f"{best[d, True][phase]:.{2 if factor > 1 else 0}f}"
            for d in (low, high)
        )
        print(f"| {phase} | {slope:.1f} | {cells} |")
    print(f"| all | {total:.1f} | |")


if __name__ == "__main__":
    main()
