"""Where a tracked step's CPU time goes, phase by phase, next to a plain step's.

Times each phase of a training step on the training thread (``time.thread_time``,
one intra-op thread): ``zero_grad``, entering ``track()`` (the hooks), the forward
pass, the backward pass (the hooks' work in it), leaving ``track()`` (statistics,
quantities, the record), and ``optimizer.step()`` (the step's snapshot and the
quantities that wait for it). Plain and tracked runs alternate in rounds of
``--steps`` steps; the log's writer is flushed before each step, outside the timed
phases, so its thread does not take the interpreter from the timed one. Medians over
rounds, in ms per step::

    .venv/bin/python benchmarks/step_phases.py --problems deep_mlp --configs economy
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import tempfile
import time

import torch
from _overhead.configs import CONFIGS, Run, warm_runs
from _overhead.problems import PROBLEMS, make_problem

PHASES = ("zero_grad", "enter", "forward", "backward", "exit", "optimizer")


def phase_ms(run: Run, batches, steps: int) -> list[float]:
    """CPU ms per step of each phase of :data:`PHASES`, over ``steps`` steps."""
    totals = [0.0] * len(PHASES)
    for _ in range(steps):
        run.flush()
        x, y = batches[run.batch_index % len(batches)]
        run.batch_index += 1
        block = run.ck.track() if run.ck is not None else contextlib.nullcontext()
        marks = [time.thread_time()]
        run.optimizer.zero_grad()
        marks.append(time.thread_time())
        block.__enter__()
        marks.append(time.thread_time())
        loss = run.loss(x, y)
        marks.append(time.thread_time())
        loss.backward()
        marks.append(time.thread_time())
        block.__exit__(None, None, None)
        marks.append(time.thread_time())
        run.optimizer.step()
        marks.append(time.thread_time())
        for i, (a, b) in enumerate(itertools.pairwise(marks)):
            totals[i] += 1e3 * (b - a)
    return [total / steps for total in totals]


def phases_parser(doc: str, steps: int, warmup: int) -> argparse.ArgumentParser:
    """The options of a benchmark by phase: problems, configurations, steps, warm-up."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["deep_mlp"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup)
    return parser


def print_header() -> None:
    """The table's header: one column per phase of :data:`PHASES` and the total."""
    print(f"| problem | config | {' | '.join(PHASES)} | total |")
    print(f"|---|---|{'---:|' * (len(PHASES) + 1)}")


def main() -> None:
    parser = phases_parser(__doc__, steps=20, warmup=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print_header()
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-phases-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            times: dict[str, list[list[float]]] = {run.config: [] for run in runs}
            for _ in range(args.rounds):
                for run in runs:
                    times[run.config].append(phase_ms(run, problem.batches, args.steps))
            for config, rounds in times.items():
                medians = [statistics.median(c) for c in zip(*rounds, strict=True)]
                cells = " | ".join(f"{m:.2f}" for m in medians)
                print(f"| {name} | {config} | {cells} | {sum(medians):.2f} |")
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
