"""The host time of filling one step's states from its per-layer statistics.

``cockpit.engines.fill.backward_states`` turns the per-layer statistics of a tracked
step into the states the quantities read: their work is Python over the layers and a
few operations per group of layers, so it grows with the number of parameter
tensors. This captures the arguments of one economy step of a benchmark problem and
times the call alone, many times in one process (medians, one intra-op thread), which
a whole step's noise would hide::

    .venv/bin/python benchmarks/fill_states.py --problems deep_mlp mlp
    git archive HEAD~1 | tar -x -C /tmp/before
    .venv/bin/python benchmarks/at_commit.py /tmp/before benchmarks/fill_states.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _overhead.capture import last_call

from cockpit.engines import fill


def captured_arguments(problem_name: str) -> tuple[tuple, dict[str, Any], int]:
    """The arguments of ``backward_states`` at a tracked economy step, and L."""
    args, kwargs = last_call(problem_name, "backward_states", [fill])
    return args, kwargs, len(kwargs["layers"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", default=["deep_mlp", "mlp"])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| problem | parameter tensors | backward_states µs (median of rounds) |")
    print("|---|---:|---:|")
    for name in args.problems:
        call_args, call_kwargs, tensors = captured_arguments(name)
        medians = []
        for _ in range(args.rounds):
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                fill.backward_states(*call_args, **call_kwargs)
                times.append(time.perf_counter() - start)
            medians.append(1e6 * statistics.median(times))
        rounds = ", ".join(f"{m:.0f}" for m in medians)
        print(f"| {name} | {tensors} | {statistics.median(medians):.0f} ({rounds}) |")


if __name__ == "__main__":
    main()
