"""The batch replay's loop route on the CPU, rows reduced one at a time or stacked.

On a GPU the loop route (one ``autograd.grad`` per sample, models of
``batch_replay.LOOP_WIDTH`` parameters or more) stacks c rows per parameter before
reducing them (``batch_replay.loop_rows``); on the CPU it reduces each row as it
comes. This script runs both routes on the CPU in one process, on one tracked model
whose route it switches between blocks of steps, both with a GPU's chunk bound
(``layer_stats.CHUNK_ELEMENTS = DEVICE_CHUNK_ELEMENTS``), the stacked one also with
``batch_replay.UNSTACKED_DEVICES`` emptied. Per step it reports what a GPU's host
pays for: ATen operations (each a kernel launch there), Python function calls
(cProfile) and ``ChunkReducer.add`` calls among them; and the training thread's CPU
time with one intra-op thread, the median of interleaved blocks (on a shared machine
contended, and on the CPU the arithmetic, not the launches, dominates)::

    .venv/bin/python benchmarks/replay_rows.py --problem resnet18 --config economy
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Iterator

import torch
from _overhead.configs import CONFIGS, Run, build_run
from _overhead.problems import PROBLEMS, Problem, make_problem
from op_count import _Counter

from cockpit.engines import batch_replay, layer_stats

#: The loop route's two ways with its rows: reduced as they come, or stacked.
ROUTES = ("one row at a time", "stacked")


@contextlib.contextmanager
def route(name: str) -> Iterator[None]:
    """The loop route ``name`` with a GPU's chunk bound, restored on exit."""
    saved = batch_replay.UNSTACKED_DEVICES, layer_stats.CHUNK_ELEMENTS
    layer_stats.CHUNK_ELEMENTS = layer_stats.DEVICE_CHUNK_ELEMENTS
    if name == "stacked":
        batch_replay.UNSTACKED_DEVICES = frozenset()
    try:
        yield
    finally:
        batch_replay.UNSTACKED_DEVICES, layer_stats.CHUNK_ELEMENTS = saved


def counts(run: Run, problem: Problem) -> dict[str, int]:
    """ATen operations, Python calls and ``ChunkReducer.add`` calls of two steps.

    The first step counts operations, the second calls (cProfile's own dispatch
    would otherwise be counted, and the counter's calls profiled).
    """
    with _Counter() as ops:
        run.step(problem.batches)
    run.flush()
    profiler = cProfile.Profile()
    profiler.enable()
    run.step(problem.batches)
    profiler.disable()
    run.flush()
    stats = pstats.Stats(profiler)
    adds = sum(
        calls
        for (file, _, function), (_, calls, *_) in stats.stats.items()  # type: ignore[attr-defined]
        if file.endswith("_chunk_reducer.py") and function == "add"
    )
    return {
        "ATen ops": ops.count,
        "Python calls": stats.total_calls,  # type: ignore[attr-defined]
        "ChunkReducer.add calls": adds,
    }


def cpu_times(run: Run, problem: Problem, rounds: int, steps: int) -> dict[str, float]:
    """Median training-thread CPU seconds per step by route, blocks interleaved."""
    times: dict[str, list[float]] = {name: [] for name in ROUTES}
    rng = random.Random(0)
    for _ in range(rounds):
        for name in rng.sample(ROUTES, len(ROUTES)):
            with route(name):
                run.step(problem.batches)  # warm-up
                for _ in range(steps):
                    start = time.thread_time()
                    run.step(problem.batches)
                    times[name].append(time.thread_time() - start)
                run.flush()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="resnet18")
    parser.add_argument("--config", choices=CONFIGS, default="economy")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    problem = make_problem(args.problem, device)
    with tempfile.TemporaryDirectory(prefix="cockpit-rows-") as logdir:
        run = build_run(problem, args.config, device, logdir)
        run.step(problem.batches)  # the engines are chosen at the first step
        found = {}
        for name in ROUTES:
            with route(name):
                found[name] = counts(run, problem)
        seconds = cpu_times(run, problem, args.rounds, args.steps)
        assert run.ck is not None
        run.ck.close()
    print(f"\n{args.problem}, {args.config}: per tracked step on the CPU\n")
    print(f"| route | {' | '.join(found[ROUTES[0]])} | CPU ms (contended) |")
    print("|---|---:|---:|---:|---:|")
    for name in ROUTES:
        cells = " | ".join(f"{value:,}" for value in found[name].values())
        print(f"| {name} | {cells} | {seconds[name] * 1e3:,.0f} |")


if __name__ == "__main__":
    main()
