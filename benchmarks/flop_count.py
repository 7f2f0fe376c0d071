"""Multiply-add work per training step, plain and tracked: a cost count immune to noise.

Counts the floating-point operations of the matrix products and convolutions a step
dispatches (``torch.utils.flop_counter.FlopCounterMode``; element-wise operations and
reductions are not counted) during ``--steps`` steps (after ``--warmup``) of the
overhead benchmark's problems (``_overhead/problems.py``), plain and under each
configuration::

    .venv/bin/python benchmarks/flop_count.py --problems 3c3d --configs economy business

Run it at two commits to compare them (``op_count.py`` counts the operations).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, Problem, make_problem
from torch.utils.flop_counter import FlopCounterMode


def flops_per_step(run: Run, problem: Problem, steps: int, warmup: int) -> float:
    """Mean counted FLOP per step of ``run`` (its writer flushed around them)."""
    for _ in range(warmup):
        run.step(problem.batches)
    run.flush()
    with FlopCounterMode(display=False) as counter:
        for _ in range(steps):
            run.step(problem.batches)
    run.flush()
    return counter.get_total_flops() / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["3c3d"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cpu")
    print("| problem | config | GFLOP per step | ratio to plain |")
    print("|---|---|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-flops-") as logdir:
            plain = None
            for config in [PLAIN, *(c for c in args.configs if c != PLAIN)]:
                run = build_run(problem, config, device, logdir)
                flops = flops_per_step(run, problem, args.steps, args.warmup)
                if run.ck is not None:
                    run.ck.close()
                plain = flops if plain is None else plain
                print(
                    f"| {name} | {config} | {flops / 1e9:.2f} | {flops / plain:.2f} |"
                )


if __name__ == "__main__":
    main()
