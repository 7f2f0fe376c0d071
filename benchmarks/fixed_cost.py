"""Where a tracked step's fixed cost goes: CPU time per step, and a profile.

CPU time per step, plain and tracked, in interleaved blocks so that both see the same
machine, with one intra-op thread: a shared CPU inflates wall-clock time far more than
the CPU time a step spends itself. Two columns: the process (all threads: training and
the log's writer thread, which is flushed at the end of each block) and the training
thread alone (``time.thread_time``)::

    .venv/bin/python benchmarks/fixed_cost.py --problems mlp deep_mlp

Medians over ``--rounds`` blocks of ``--steps`` steps. With ``--profile`` it prints,
per problem and configuration, the tracked steps' cProfile (top functions by own time,
by calls and by cumulative time; training thread only) instead of timing them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, warm_runs
from _overhead.problems import PROBLEMS, Batches, make_problem


def cpu_ms_per_step(run: Run, batches: Batches, steps: int) -> tuple[float, float]:
    """CPU milliseconds per step of the process and of this thread (writer flushed)."""
    run.flush()
    process, thread = time.process_time(), time.thread_time()
    for _ in range(steps):
        run.step(batches)
    run.flush()
    process, thread = time.process_time() - process, time.thread_time() - thread
    return 1e3 * process / steps, 1e3 * thread / steps


def profile(run: Run, batches: Batches, steps: int, top: int) -> None:
    """Print cProfile's top functions by own time, by calls and by cumulative time.

    The cumulative table names the parts of a step (the eigensolve, a BackPACK
    extension's module hook) and what each costs with everything it calls.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        run.step(batches)
    profiler.disable()
    run.flush()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("ncalls").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


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
        print(
            "| problem | config | process CPU ms per step | ratio | "
            "training thread CPU ms per step | ratio |"
        )
        print("|---|---|---:|---:|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-fixed-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            if args.profile:
                for run in runs[1:]:
                    print(f"## {name} {run.config}")
                    profile(run, problem.batches, args.steps, args.top)
            else:
                times: dict[str, list[tuple[float, float]]] = {
                    run.config: [] for run in runs
                }
                for _ in range(args.rounds):
                    for run in runs:
                        t = cpu_ms_per_step(run, problem.batches, args.steps)
                        times[run.config].append(t)
                medians = {
                    config: [
                        statistics.median(column)
                        for column in zip(*values, strict=True)
                    ]
                    for config, values in times.items()
                }
                plain_process, plain_thread = medians[PLAIN]
                for config, (process, thread) in medians.items():
                    print(
                        f"| {name} | {config} | {process:.2f} | "
                        f"{process / plain_process:.1f}x | {thread:.2f} | "
                        f"{thread / plain_thread:.1f}x |"
                    )
            for run in runs:
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
