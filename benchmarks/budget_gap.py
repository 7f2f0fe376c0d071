"""Where the default budget's run loses time that its measured share does not see.

The overhead budget takes its untracked steps as the plain step and counts the tracked
steps' extra time. Anything the tracker costs outside the tracked steps (hooks left
installed, the log writer's thread, garbage collection of what the tracker allocated)
escapes it. This script measures those costs on one problem of the overhead benchmark
(default ``transformer``), three trainings in one process on the same batches:

- ``plain``: no Cockpit;
- ``attached``: the economy preset every ``--every`` steps, so most steps are
  untracked steps of a run with a Cockpit attached;
- ``tracked``: the economy preset at every step.

Counts first, which contention does not change: ATen operations (a
``TorchDispatchMode`` on the training thread) and Python function calls (cProfile) of
a plain step, an untracked step after ``--warmup`` steps with the Cockpit attached,
and a tracked step. Then times, in interleaved blocks of ``--block`` steps per
training (shuffled order per round): each step's wall time and the training thread's
CPU time, the log writer thread's CPU time per record, and the time the training
thread spent in garbage collection (``gc.callbacks``). Medians per kind of step; the
blocks other processes contended (``_overhead/timing.py``'s ``CpuMonitor``) are
counted, and the wall times are to be read as contended where they are::

    .venv/bin/python benchmarks/budget_gap.py
    .venv/bin/python benchmarks/budget_gap.py --problem 3c3d --rounds 4
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from _overhead.configs import PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, Problem, make_problem
from _overhead.timing import CpuMonitor
from op_count import _Counter

import cockpit
from cockpit.presets import PRESETS

ATTACHED, TRACKED = "attached", "tracked"


def economy_run(problem: Problem, config: str, every: int, logdir: str) -> Run:
    """A training with the economy preset every ``every`` steps, named ``config``."""
    run = build_run(problem, PLAIN, torch.device("cpu"), logdir)
    run.config = config
    run.ck = cockpit.Cockpit(
        run.model,
        run.loss_fn,
        run.optimizer,
        logdir=logdir,
        run_name=f"{problem.name}-{config}",
        preset=None,
        quantities=dict.fromkeys(PRESETS["economy"], cockpit.every(every)),
        loss_input=problem.loss_input,
    )
    return run


def tracked_now(run: Run) -> bool:
    """Whether the step ``run`` just took was tracked."""
    return run.ck is not None and bool(run.ck._last_tracked)


def counts(run: Run, problem: Problem, want_tracked: bool | None) -> dict[str, int]:
    """ATen operations and Python calls of a step of the wanted kind.

    The second such step: the first one profiled also counts the profiler's start.
    """
    found: list[dict[str, int]] = []
    while len(found) < 2:
        with _Counter() as ops:
            profile = cProfile.Profile()
            profile.enable()
            run.step(problem.batches)
            profile.disable()
        if want_tracked is None or tracked_now(run) == want_tracked:
            calls = pstats.Stats(profile).total_calls
            found.append({"aten_ops": ops.count, "python_calls": calls})
    run.flush()
    return found[-1]


class GcClock:
    """Training-thread CPU seconds spent in garbage collection, per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start
            self.collections[info["generation"]] += 1


def timed_rounds(runs: dict[str, Run], problem: Problem, args) -> dict[str, Any]:
    """Interleaved blocks; per kind of step its wall and CPU times, and the rest."""
    monitor = CpuMonitor(args.contention_threshold, args.patience)
    clock = GcClock()
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    gc_seconds: dict[str, float] = defaultdict(float)
    gc_collections: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    contended: dict[str, int] = defaultdict(int)
    order = list(runs)
    for _ in range(args.rounds):
        random.shuffle(order)
        for config in order:
            run = runs[config]
            monitor.wait_for_quiet()
            before = monitor.snapshot()
            gc_before, collections = clock.seconds, list(clock.collections)
            for _ in range(args.block):
                start_wall, start_cpu = time.perf_counter(), time.thread_time()
                run.step(problem.batches)
                kind = config
                if config == ATTACHED:
                    kind += "-tracked" if tracked_now(run) else "-untracked"
                wall[kind].append(time.perf_counter() - start_wall)
                cpu[kind].append(time.thread_time() - start_cpu)
            run.flush()
            gc_seconds[config] += clock.seconds - gc_before
            for g in range(3):
                gc_collections[config][g] += clock.collections[g] - collections[g]
            others = monitor.others_share(before, monitor.snapshot())
            contended[config] += monitor.contended(others)
    return {
        "median_ms": {
            kind: {
                "wall": 1000 * statistics.median(wall[kind]),
                "cpu": 1000 * statistics.median(cpu[kind]),
                "steps": len(wall[kind]),
            }
            for kind in sorted(wall)
        },
        "gc_ms": {c: 1000 * s for c, s in gc_seconds.items()},
        "gc_collections": dict(gc_collections),
        "contended_blocks": dict(contended),
        "blocks": args.rounds,
    }


def writer_ms_per_record(runs: dict[str, Run]) -> dict[str, float]:
    """The writer thread's CPU ms per record written, per tracked training."""
    result = {}
    for config, run in runs.items():
        if run.ck is None:
            continue
        run.flush()
        records = len(cockpit.LogReader(run.ck.run_dir).read_new())
        result[config] = 1000 * run.ck.writer.cpu_seconds / max(records, 1)
    return result


def report(problem: str, found: dict[str, Any]) -> str:
    lines = [
        f"### {problem}",
        "",
        "| step | ATen ops | Python calls |",
        "|---|---:|---:|",
    ]
    for kind, row in found["counts"].items():
        lines.append(f"| {kind} | {row['aten_ops']} | {row['python_calls']} |")
    timing = found["timing"]
    lines += [
        "",
        f"Interleaved blocks ({timing['blocks']} per training; contended: "
        f"{timing['contended_blocks']}):",
        "",
        "| step | steps | median wall ms | median training-thread CPU ms |",
        "|---|---:|---:|---:|",
    ]
    for kind, row in timing["median_ms"].items():
        lines.append(
            f"| {kind} | {row['steps']} | {row['wall']:.2f} | {row['cpu']:.2f} |"
        )
    lines += [
        "",
        f"Writer thread CPU ms per record: {found['writer_ms_per_record']}",
        f"Garbage collection on the training thread, ms per training: "
        f"{timing['gc_ms']}; collections (gen 0, 1, 2): {timing['gc_collections']}",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="transformer")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--contention-threshold", type=float, default=0.15)
    parser.add_argument("--patience", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    problem = make_problem(args.problem, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as logdir:
        runs = {
            PLAIN: build_run(problem, PLAIN, torch.device("cpu"), logdir),
            ATTACHED: economy_run(problem, ATTACHED, args.every, logdir),
            TRACKED: economy_run(problem, TRACKED, 1, logdir),
        }
        for run in runs.values():
            for _ in range(args.warmup):
                run.step(problem.batches)
            run.flush()
        found: dict[str, Any] = {
            "counts": {
                "plain": counts(runs[PLAIN], problem, None),
                "attached, untracked": counts(runs[ATTACHED], problem, False),
                "attached, tracked": counts(runs[ATTACHED], problem, True),
                "tracked": counts(runs[TRACKED], problem, None),
            }
        }
        found["timing"] = timed_rounds(runs, problem, args)
        found["writer_ms_per_record"] = writer_ms_per_record(runs)
        for run in runs.values():
            if run.ck is not None:
                run.ck.close()
    print(report(args.problem, found), flush=True)


if __name__ == "__main__":
    main()
