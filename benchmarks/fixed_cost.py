"""Where a tracked step's fixed cost goes: CPU time per step, and a profile.

CPU time (``time.process_time``, all threads of this process) per step, plain and
tracked, measured in interleaved blocks so that both see the same machine; a shared
CPU inflates wall-clock time far more than the CPU time a step spends itself::

    .venv/bin/python benchmarks/fixed_cost.py --problems mlp deep_mlp

With ``--profile`` it also prints, per problem and configuration, the tracked steps'
cProfile (top functions by own time and by calls) instead of timing them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, make_problem


def cpu_ms_per_step(run: Run, batches, steps: int) -> float:
    """Process CPU milliseconds per step over ``steps`` steps (writer flushed)."""
    run.flush()
    start = time.process_time()
    for _ in range(steps):
        run.step(batches)
    run.flush()
    return 1e3 * (time.process_time() - start) / steps


def profile(run: Run, batches, steps: int, top: int) -> None:
    """Print cProfile's top functions by own time and by calls over ``steps`` steps."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        run.step(batches)
    profiler.disable()
    run.flush()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("ncalls").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["mlp"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=50, help="steps per block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)  # CPU time of one thread: contention cannot add to it
    device = torch.device("cpu")
    if not args.profile:
        print("| problem | config | CPU ms per step (median) | ratio to plain |")
        print("|---|---|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-fixed-") as logdir:
            configs = [PLAIN, *(c for c in args.configs if c != PLAIN)]
            runs = [build_run(problem, c, device, logdir) for c in configs]
            for run in runs:
                for _ in range(args.warmup):
                    run.step(problem.batches)
            if args.profile:
                for run in runs[1:]:
                    print(f"## {name} {run.config}")
                    profile(run, problem.batches, args.steps, args.top)
            else:
                times: dict[str, list[float]] = {run.config: [] for run in runs}
                for _ in range(args.rounds):
                    for run in runs:
                        t = cpu_ms_per_step(run, problem.batches, args.steps)
                        times[run.config].append(t)
                plain = statistics.median(times[PLAIN])
                for config, values in times.items():
                    ms = statistics.median(values)
                    print(f"| {name} | {config} | {ms:.2f} | {ms / plain:.1f}x |")
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
