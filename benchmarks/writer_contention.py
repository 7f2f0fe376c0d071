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
* ``economy/switch-0.5ms``: ``sys.setswitchinterval(5e-4)`` during the block, a
  diagnostic only (restored after it): if the training thread waits for the GIL
  held by the writer, a shorter switch interval shortens each wait.

Per variant: median wall ms per step, median CPU ms of the training thread per step
(``time.thread_time``), their difference (time the training thread was runnable or
blocked but not running: waiting for the GIL, for the pool's threads, or for a
CPU), the writer thread's CPU ms per step (``RunWriter.cpu_seconds``, counted over
the block and the flush after it; two records per economy step), and how many
blocks other processes contended (``overhead.py``'s ``/proc/stat`` check; before
each block the script waits for quiet CPUs, up to ``--patience`` seconds in all)::

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
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextmanager
def _as_is() -> Iterator[None]:
    yield


#: Variant -> (configuration it trains, context around its timed block).
VARIANTS: dict[str, tuple[str, Callable[[Run], object]]] = {
    PLAIN: (PLAIN, lambda run: _as_is()),
    "plain/1-thread": (PLAIN, lambda run: _threads(1)),
    ECONOMY: (ECONOMY, lambda run: _as_is()),
    "economy/writer-held": (ECONOMY, _writer_held),
    "economy/1-thread": (ECONOMY, lambda run: _threads(1)),
    "economy/switch-0.5ms": (ECONOMY, lambda run: _switch_interval(5e-4)),
}


def _block(
    run: Run, batches, steps: int, context, monitor: CpuMonitor
) -> tuple[list, list, float, bool]:
    """Wall and thread-CPU seconds of each step, the writer's CPU seconds per step,
    and whether other processes used the CPUs meanwhile (waits for quiet first)."""
    walls, cpus = [], []
    monitor.wait_for_quiet()
    writer = run.ck.writer if run.ck is not None else None
    run.flush()
    writer_before = writer.cpu_seconds if writer is not None else 0.0
    before = monitor.snapshot()
    with context(run):
        for _ in range(steps):
            wall, cpu = time.perf_counter(), time.thread_time()
            run.step(batches)
            cpus.append(time.thread_time() - cpu)
            walls.append(time.perf_counter() - wall)
    contended = monitor.contended(monitor.others_share(before, monitor.snapshot()))
    run.flush()
    time.sleep(0.01)  # the writer updates cpu_seconds after the flush item
    writer_cpu = (writer.cpu_seconds - writer_before) if writer is not None else 0.0
    return walls, cpus, writer_cpu / steps, contended


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
        "| problem | variant | wall ms/step | training thread CPU ms/step | "
        "wall - CPU | writer CPU ms/step | wall ratio to plain | contended blocks |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
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
            times: dict[str, tuple[list, list, list, list]] = {
                v: ([], [], [], []) for v in args.variants
            }
            rng = random.Random(0)
            for _ in range(args.rounds):
                for variant in rng.sample(args.variants, len(args.variants)):
                    context = VARIANTS[variant][1]
                    walls, cpus, writer, contended = _block(
                        runs[variant], problem.batches, args.steps, context, monitor
                    )
                    times[variant][0].extend(walls)
                    times[variant][1].extend(cpus)
                    times[variant][2].append(writer)
                    times[variant][3].append(contended)
            plain = statistics.median(times[PLAIN][0]) if PLAIN in times else None
            for variant, (walls, cpus, writer, contended) in times.items():
                wall, cpu = statistics.median(walls), statistics.median(cpus)
                ratio = f"{wall / plain:.1f}x" if plain else "-"
                print(
                    f"| {name} | {variant} | {wall * 1e3:.2f} | {cpu * 1e3:.2f} | "
                    f"{(wall - cpu) * 1e3:.2f} | {statistics.median(writer) * 1e3:.2f} "
                    f"| {ratio} | {sum(contended)} of {len(contended)} |"
                )
            for run in runs.values():
                if run.ck is not None:
                    run.ck.close()
    print(f"\nload average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
