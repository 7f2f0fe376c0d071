"""Why a tracked step's wall time exceeds its CPU time: the writer, the GIL, threads.

Diagnostic experiments for issue 12, interleaved in one process (shuffled rounds,
medians of all timed steps), each a variant of the same tracked training:

* ``plain``, ``economy``: as ``overhead.py`` times them (the log's writer thread
  runs alongside, the torch intra-op pool has its default size);
* ``economy/writer-held``: the writer thread is held (blocked on an event) while the
  block runs and writes the block's records after it, untimed: the step without any
  concurrent writer work;
* ``economy/1-thread``, ``plain/1-thread``: ``torch.set_num_threads(1)`` during the
  block (restored after it);
* ``economy/writer-held+1-thread``: both;
* ``economy/switch-0.5ms``: ``sys.setswitchinterval(5e-4)`` during the block, a
  diagnostic only (restored after it): if the training thread waits for the GIL
  held by the writer, a shorter switch interval shortens each wait.

Per variant: the median and the mean of the training thread's wall ms per step,
and the means of its parts (they add up to the mean): on a CPU
(``time.thread_time``), waiting for a CPU (runnable, but other threads or processes
had the cores; from the kernel's ``/proc/thread-self/schedstat``), and asleep (the
rest: blocked on the GIL, or on the intra-op pool's threads); the writer thread's
CPU ms per step (``RunWriter.cpu_seconds``, counted over the block and the flush
after it; two records per economy step), and how many blocks other processes
contended (``overhead.py``'s ``/proc/stat`` check; before each block the script
waits for quiet CPUs, up to ``--patience`` seconds in all)::

    .venv/bin/python benchmarks/writer_contention.py --problems mlp deep_mlp

The load average is printed with the table: on a machine other processes share,
wall times mean little (contended blocks are counted, not repeated).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from _overhead.configs import Run, build_run
from _overhead.problems import PROBLEMS, make_problem
from _overhead.timing import CpuMonitor

PLAIN, ECONOMY = "plain", "economy"


class _Hold:
    """A queue item that blocks the writer thread until released (no record)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def materialize(self) -> list:
        self.release.wait()
        return []


@contextmanager
def _writer_held(run: Run) -> Iterator[None]:
    assert run.ck is not None
    hold = _Hold()
    run.ck.writer.submit(hold)
    try:
        yield
    finally:
        hold.release.set()


@contextmanager
def _setting(get: Callable[[], Any], put: Callable[[Any], None], value) -> Iterator:
    """Set a process-wide setting for the block, and restore it after."""
    before = get()
    put(value)
    try:
        yield
    finally:
        put(before)


def _threads(count: int):
    return _setting(torch.get_num_threads, torch.set_num_threads, count)


def _switch_interval(seconds: float):
    return _setting(sys.getswitchinterval, sys.setswitchinterval, seconds)


@contextmanager
def _as_is() -> Iterator[None]:
    yield


@contextmanager
def _held_one_thread(run: Run) -> Iterator[None]:
    with _writer_held(run), _threads(1):
        yield


#: Variant -> (configuration it trains, context around its timed block).
VARIANTS: dict[str, tuple[str, Callable[[Run], object]]] = {
    PLAIN: (PLAIN, lambda run: _as_is()),
    "plain/1-thread": (PLAIN, lambda run: _threads(1)),
    ECONOMY: (ECONOMY, lambda run: _as_is()),
    "economy/writer-held": (ECONOMY, _writer_held),
    "economy/1-thread": (ECONOMY, lambda run: _threads(1)),
    "economy/writer-held+1-thread": (ECONOMY, lambda run: _held_one_thread(run)),
    "economy/switch-0.5ms": (ECONOMY, lambda run: _switch_interval(5e-4)),
}


def _queued() -> float:
    """Seconds this thread has waited for a CPU, from the kernel.

    The second field of ``/proc/thread-self/schedstat``: time runnable but waiting
    in a run queue (other threads or processes had the CPUs), added when the thread
    gets a CPU. Wall time minus that and the CPU time (``time.thread_time``; the
    first field is only updated at ticks) is the time the thread slept: blocked on
    the GIL, on a lock, or on the intra-op pool.
    """
    with open("/proc/thread-self/schedstat") as stat:
        return 1e-9 * int(stat.read().split()[1])


#: Per step: wall, on a CPU, waiting for a CPU, asleep (wall - the other two).
METRICS = ("wall", "cpu", "queued", "asleep")


def _block(
    run: Run, batches, steps: int, context, monitor: CpuMonitor
) -> tuple[dict[str, list[float]], float, bool]:
    """:data:`METRICS` of each step (seconds), the writer's CPU seconds per step,
    and whether other processes used the CPUs meanwhile (waits for quiet first)."""
    times: dict[str, list[float]] = {m: [] for m in METRICS}
    monitor.wait_for_quiet()
    writer = run.ck.writer if run.ck is not None else None
    run.flush()
    writer_before = writer.cpu_seconds if writer is not None else 0.0
    before = monitor.snapshot()
    with context(run):
        for _ in range(steps):
            queued, cpu, wall = _queued(), time.thread_time(), time.perf_counter()
            run.step(batches)
            wall = time.perf_counter() - wall
            cpu, queued = time.thread_time() - cpu, _queued() - queued
            for metric, value in zip(
                METRICS, (wall, cpu, queued, wall - cpu - queued), strict=True
            ):
                times[metric].append(value)
    contended = monitor.contended(monitor.others_share(before, monitor.snapshot()))
    run.flush()
    time.sleep(0.01)  # the writer updates cpu_seconds after the flush item
    writer_cpu = (writer.cpu_seconds - writer_before) if writer is not None else 0.0
    return times, writer_cpu / steps, contended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["mlp"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=[*VARIANTS])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--patience",
        type=float,
        default=120.0,
        help="seconds in all to wait for quiet CPUs before blocks",
    )
    args = parser.parse_args()
    device = torch.device("cpu")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"switch interval {sys.getswitchinterval() * 1e3:g} ms, "
        f"load average before {os.getloadavg()}\n"
    )
    print(
        "| problem | variant | wall ms/step (median) | wall (mean) | on a CPU (mean) "
        "| waiting for a CPU (mean) | asleep (mean) | writer CPU ms/step "
        "| median wall ratio to plain | contended blocks |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    monitor = CpuMonitor(threshold=0.15, patience=args.patience)
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-contention-") as logdir:
            runs = {}
            for variant in args.variants:
                config = VARIANTS[variant][0]
                variant_dir = os.path.join(logdir, variant.replace("/", "-"))
                runs[variant] = build_run(problem, config, device, variant_dir)
                for _ in range(args.warmup):
                    runs[variant].step(problem.batches)
                runs[variant].flush()
            times = {v: {m: [] for m in METRICS} for v in args.variants}
            writers: dict[str, list[float]] = {v: [] for v in args.variants}
            contention: dict[str, list[bool]] = {v: [] for v in args.variants}
            rng = random.Random(0)
            for _ in range(args.rounds):
                for variant in rng.sample(args.variants, len(args.variants)):
                    context = VARIANTS[variant][1]
                    block, writer, contended = _block(
                        runs[variant], problem.batches, args.steps, context, monitor
                    )
                    for metric, values in block.items():
                        times[variant][metric] += values
                    writers[variant].append(writer)
                    contention[variant].append(contended)
            plain = statistics.median(times[PLAIN]["wall"]) if PLAIN in times else None
            for variant, metrics in times.items():
                median = statistics.median(metrics["wall"])
                ms = [1e3 * median] + [
                    1e3 * statistics.mean(metrics[m]) for m in METRICS
                ]
                ratio = f"{median / plain:.1f}x" if plain else "-"
                contended = contention[variant]
                print(
                    f"| {name} | {variant} | "
                    + " | ".join(f"{value:.2f}" for value in ms)
                    + f" | {1e3 * statistics.median(writers[variant]):.2f} | {ratio} "
                    f"| {sum(contended)} of {len(contended)} |"
                )
            for run in runs.values():
                if run.ck is not None:
                    run.ck.close()
    print(f"\nload average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
