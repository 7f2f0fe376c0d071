"""Python function calls per phase of a training step, plain and tracked.

Counts the calls (``sys.setprofile``, the garbage collector held off) on the training
thread in each phase of :data:`step_phases.PHASES` over ``--steps`` steps after a
warm-up, for plain training and each configuration: a count the load of a shared
machine does not move, next to ``step_phases.py``'s CPU times::

    .venv/bin/python benchmarks/phase_calls.py --problems deep_mlp mlp --configs economy
"""

from __future__ import annotations

import collections
import contextlib
import gc
import sys
import tempfile

import torch
from _overhead.configs import Run, warm_runs
from _overhead.problems import make_problem
from step_phases import PHASES, phases_parser, print_header


def phase_calls(run: Run, batches, steps: int) -> list[float]:
    """Python calls per step in each phase of :data:`PHASES`."""
    counts: collections.Counter[str] = collections.Counter()
    phase = [""]

    def count(frame, event: str, arg) -> None:
        if event == "call":
            counts[phase[0]] += 1

    for _ in range(steps):
        run.flush()
        x, y = batches[run.batch_index % len(batches)]
        run.batch_index += 1
        block = run.ck.track() if run.ck is not None else contextlib.nullcontext()
        gc.collect()
        gc.disable()
        sys.setprofile(count)
        try:
            phase[0] = "zero_grad"
            run.optimizer.zero_grad()
            phase[0] = "enter"
            block.__enter__()
            phase[0] = "forward"
            loss = run.loss(x, y)
            phase[0] = "backward"
            loss.backward()
            phase[0] = "exit"
            block.__exit__(None, None, None)
            phase[0] = "optimizer"
            run.optimizer.step()
        finally:
            sys.setprofile(None)
            gc.enable()
    return [counts[name] / steps for name in PHASES]


def main() -> None:
    args = phases_parser(__doc__, steps=10, warmup=3).parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print_header()
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-calls-") as logdir:
            for run in warm_runs(problem, args.configs, device, logdir, args.warmup):
                calls = phase_calls(run, problem.batches, args.steps)
                cells = " | ".join(f"{c:.0f}" for c in calls)
                print(f"| {name} | {run.config} | {cells} | {sum(calls):.0f} |")
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
