"""Where a tracked step's end goes: per-layer statistics, states, each quantity.

When a ``track()`` block ends the tracker gathers the per-layer statistics
(``_layer_stats``), fills the states (``fill.backward_states``) and calls each due
quantity's ``finalize``. This wraps those calls with a timer (wall time of the
training thread) and prints the mean per step of each, over the steps after
``--warmup``, next to the median plain step of the same problem, timed in between::

    .venv/bin/python benchmarks/finalize_costs.py --problem resnet18 \
        --config economy/replay1 --steps 6
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from _overhead.configs import CONFIGS, build_run
from _overhead.problems import PROBLEMS, make_problem

from cockpit import _step
from cockpit.engines import fill
from cockpit.quantities import REGISTRY

#: Label -> seconds of each call in the timed steps.
TIMES: dict[str, list[float]] = {}


def _timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds each call's time to TIMES."""
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES.setdefault(label, []).append(time.perf_counter() - start)

    setattr(owner, name, wrapper)


def instrument() -> None:
    """Time the step's end, its parts and every quantity's ``finalize``."""
    _timed(_step.TrackedStep, "_conclude", "end of the block (all below)")
    _timed(_step.TrackedStep, "_layer_stats", "per-layer statistics")
    _timed(fill, "backward_states", "states")
    for name, cls in REGISTRY.items():
        if "finalize" in vars(cls):
            _timed(cls, "finalize", f"finalize: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="deep_mlp")
    parser.add_argument("--config", choices=CONFIGS, default="economy")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    instrument()
    device = torch.device("cpu")
    problem = make_problem(args.problem, device)
    with tempfile.TemporaryDirectory() as logdir:
        run = build_run(problem, args.config, device, logdir)
        plain = build_run(problem, "plain", device, logdir)
        plain_times = []
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                TIMES.clear()
            run.step(problem.batches)
            start = time.perf_counter()
            plain.step(problem.batches)
            plain_times.append(time.perf_counter() - start)
        run.flush()
    print(f"| {args.problem} {args.config} | ms per step |")
    print("|---|---:|")
    plain_ms = 1e3 * statistics.median(plain_times[args.warmup :])
    print(f"| a plain step | {plain_ms:.2f} |")
    for label, times in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {label} | {1e3 * sum(times) / args.steps:.2f} |")


if __name__ == "__main__":
    main()
