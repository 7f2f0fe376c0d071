"""The log writer's work per record: CPU time and Python calls, by stage.

A tracked step hands the writer one record (tensors still on the device); the
writer thread materializes it (``TensorRecord.materialize``: one host copy, the
conversion to Python), encodes it (``encode_record``) and appends the line, and in
its idle time sorts the line into the columnar cache (``SegmentWriter``). All of it
is Python that holds the GIL, so on a machine where the training thread is itself
mostly Python (small models) it adds to the step's wall time instead of overlapping
it (``benchmarks/writer_contention.py``).

This script records the items a Cockpit submits over ``--steps`` steps of a
problem (economy preset, every step), then replays them on the main thread through
each stage of the writer (the run's own ``StepsAppender`` and ``SegmentWriter`` on a
scratch directory): the median CPU milliseconds per record over ``--repeats``
replays, of the replaying thread (``time.thread_time``) and of the whole process
(``time.process_time``: also the threads a library starts, such as numpy's BLAS
threads under ``kfac_block``'s eigenvalues, which the thread's time misses), and
Python function calls per record from ``cProfile`` (deterministic, the same on a
loaded machine)::

    .venv/bin/python benchmarks/writer_work.py --problems mlp deep_mlp
    .venv/bin/python benchmarks/writer_work.py --problems 3c3d --config full --profile 25

``--config`` takes ``overhead.py``'s configurations (every quantity at every step);
``--profile K`` prints each stage's K functions of largest cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _overhead.configs import CONFIGS, PLAIN, build_run
from _overhead.problems import PROBLEMS, make_problem

from cockpit.logs._appender import StepsAppender, open_steps
from cockpit.logs._notices import Notices
from cockpit.logs._segments import SegmentWriter


def recorded_items(name: str, config: str, steps: int, warmup: int) -> list[Any]:
    """The items a Cockpit (``config``, e.g. economy at every step) submits."""
    problem = make_problem(name, torch.device("cpu"))
    items: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="cockpit-work-") as logdir:
        run = build_run(problem, config, torch.device("cpu"), logdir)
        assert run.ck is not None
        for _ in range(warmup):
            run.step(problem.batches)
        submit = run.ck.writer.submit
        run.ck.writer.submit = lambda item: (items.append(item), submit(item))[1]
        for _ in range(steps):
            run.step(problem.batches)
        run.ck.close()
    return items


def _appender(run_dir: Path) -> StepsAppender:
    fd = open_steps(run_dir)
    segments = SegmentWriter(run_dir)
    return StepsAppender(
        run_dir, fd, queue.SimpleQueue(), 2.0, None, Notices(), None, segments
    )


Stage = tuple[Callable[[], Any], Callable[[Any], None]]


def stages(items: list[Any], scratch: Path) -> dict[str, Stage]:
    """Each stage as ``(prepare, measured)``: ``measured(prepare())`` is timed."""
    materialized = [item.materialize() for item in items]

    def fresh() -> StepsAppender:
        return _appender(Path(tempfile.mkdtemp(dir=scratch)))

    def materialize(_: Any) -> None:
        for item in items:
            item.materialize()

    def no_cache() -> StepsAppender:
        appender = fresh()
        appender._segments.active = False
        return appender

    def encode(appender: StepsAppender) -> None:
        for record in materialized:
            appender._write_record(record)

    def written() -> StepsAppender:
        appender = fresh()
        encode(appender)
        return appender

    def cache(appender: StepsAppender) -> None:
        segments = appender._segments
        while segments.pending:
            segments.work()

    return {
        "materialize": (lambda: None, materialize),
        "encode and append": (no_cache, encode),
        "columnar cache": (written, cache),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["mlp"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--config", choices=[c for c in CONFIGS if c != PLAIN], default="economy"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="K", help="print each stage's top K"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| problem | stage | thread CPU ms per record | process CPU ms per record "
        "| Python calls per record |"
    )
    print("|---|---|---:|---:|---:|")
    for name in args.problems:
        items = recorded_items(name, args.config, args.steps, args.warmup)
        with tempfile.TemporaryDirectory(prefix="cockpit-work-") as scratch:
            for stage, (prepare, measured) in stages(items, Path(scratch)).items():
                seconds, process = [], []
                for _ in range(args.repeats):
                    state = prepare()
                    start, start_process = time.thread_time(), time.process_time()
                    measured(state)
                    seconds.append(time.thread_time() - start)
                    process.append(time.process_time() - start_process)
                profiler = cProfile.Profile()
                profiler.runcall(measured, prepare())
                stats = pstats.Stats(profiler)
                calls = stats.total_calls  # type: ignore[attr-defined]
                if args.profile:
                    stats.sort_stats("cumulative").print_stats(args.profile)
                print(
                    f"| {name} | {stage} | "
                    f"{1e3 * statistics.median(seconds) / len(items):.3f} | "
                    f"{1e3 * statistics.median(process) / len(items):.3f} | "
                    f"{calls / len(items):,.0f} |"
                )


if __name__ == "__main__":
    main()
