"""Where a tracked step's CPU goes with two intra-op threads: per thread, per operation.

Wall-clock time with two threads on a shared 2-core machine measures the other
processes; CPU time per thread does not, much. Per step of each configuration
(interleaved in shuffled rounds in one process, as ``overhead.py`` does) this prints
the median CPU time of the training thread, of the intra-op pool's other threads and
of the log's writer thread, read from ``/proc/thread-self/task/*/schedstat``
(nanoseconds). With ``--ops`` it then runs a few more tracked steps of the last
configuration under a ``TorchDispatchMode`` that reads both clocks around every ATen
operation and sums them per call site in ``cockpit/`` (the innermost frame there,
``-`` for the model's own forward and backward), operation and shapes: an operation
whose pool time is zero ran on the training thread alone (``aten.mv`` of the
convolutions' ``g_n . g``, for example).

The intra-op pool's threads are told to sleep when idle (``OMP_WAIT_POLICY=PASSIVE``,
set before torch is imported unless given) so their CPU time is work, not spinning;
the training thread's CPU time is then close to what a step takes on an idle
machine when its parallel operations balance::

    .venv/bin/python benchmarks/thread_split.py --problem 3c3d --configs economy
    .venv/bin/python benchmarks/thread_split.py --configs economy --ops --top 40
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import collections
import statistics
import tempfile
import threading
import time
import traceback

import torch
from _overhead.configs import CONFIGS, PLAIN, build_run, interleaved_steps
from _overhead.problems import PROBLEMS, make_problem
from torch.utils._python_dispatch import TorchDispatchMode

WRITER = "cockpit-writer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block")
    parser.add_argument("--ops", action="store_true", help="split per operation")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    problem = make_problem(args.problem, device)
    configs = [PLAIN, *(c for c in args.configs if c != PLAIN)]
    with tempfile.TemporaryDirectory(prefix="cockpit-split-") as logdir:
        runs = {c: build_run(problem, c, device, logdir) for c in configs}
        for run in runs.values():
            run.step(problem.batches)
            run.flush()
        split: dict[str, dict[str, list[float]]] = {c: {} for c in configs}
        for config, run in interleaved_steps(runs, problem, args.rounds, args.steps):
            before = thread_times()
            start = time.perf_counter()
            run.step(problem.batches)
            wall = time.perf_counter() - start
            spent = {k: v - before.get(k, 0.0) for k, v in thread_times().items()}
            for key, value in {"wall": wall, **spent}.items():
                split[config].setdefault(key, []).append(value)
        _report(args, split)
        if args.ops:
            _op_split(runs[configs[-1]], problem, args.steps, args.top)
        for run in runs.values():
            if run.ck is not None:
                run.ck.close()


def thread_times() -> dict[str, float]:
    """Seconds on a CPU so far: the training thread, the writer, the pool's others."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    me = threading.get_native_id()
    times = {"training": 0.0, "writer": 0.0, "pool": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                seconds = int(f.read().split()[0]) / 1e9
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        name = names.get(int(tid), "")
        writer = name.startswith(WRITER)
        key = "training" if int(tid) == me else "writer" if writer else "pool"
        times[key] += seconds
    return times


def _report(args: argparse.Namespace, split: dict[str, dict[str, list[float]]]) -> None:
    """Medians in ms per step, and their ratios to plain training's."""
    plain = {k: statistics.median(v) for k, v in split[PLAIN].items()}
    policy = os.environ["OMP_WAIT_POLICY"]
    print(
        f"\n{args.problem}: median ms per step, {args.threads} intra-op threads, "
        f"OMP_WAIT_POLICY={policy}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| config | wall | training thread | pool | writer | training ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for config, parts in split.items():
        m = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
        ratio = m["training"] / (plain["training"] * 1e3)
        print(
            f"| {config} | {m['wall']:.1f} | {m['training']:.1f} | {m['pool']:.1f} "
            f"| {m['writer']:.1f} | {ratio:.2f} |"
        )


class _Split(TorchDispatchMode):
    """Training-thread and pool CPU time of every ATen operation, per call site."""

    def __init__(self) -> None:
        super().__init__()
        self.spent: dict[tuple, list[float]] = collections.defaultdict(
            lambda: [0, 0.0, 0.0]
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        pool = thread_times()["pool"]
        start = time.thread_time()
        out = func(*args, **(kwargs or {}))
        own = time.thread_time() - start
        pool = thread_times()["pool"] - pool
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        entry = self.spent[(_site(), str(func), shapes)]
        entry[0] += 1
        entry[1] += own
        entry[2] += pool
        return out


def _site() -> str:
    """The innermost frame in ``cockpit/`` of the current stack, or ``-``."""
    for frame in reversed(traceback.extract_stack(limit=40)[:-3]):
        if "/cockpit/" in frame.filename:
            return f"{frame.filename.rsplit('/cockpit/', 1)[-1]}:{frame.name}"
    return "-"


def _op_split(run, problem, steps: int, top: int) -> None:
    """Per call site and per operation: training-thread and pool CPU ms per step."""
    mode = _Split()
    with mode:
        for _ in range(steps):
            run.step(problem.batches)
    run.flush()
    sites: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for (site, _, _), (_, own, pool) in mode.spent.items():
        sites[site][0] += own / steps
        sites[site][1] += pool / steps
    print(f"\n{run.config}: CPU ms per step by call site (training thread, pool)\n")
    print("| site | training | pool |\n|---|---:|---:|")
    for site, (own, pool) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {site} | {own * 1e3:.2f} | {pool * 1e3:.2f} |")
    print(f"\n{run.config}: by operation (calls per step, training thread, pool ms)\n")
    print("| site | operation | shapes | calls | training | pool |")
    print("|---|---|---|---:|---:|---:|")
    ranked = sorted(mode.spent.items(), key=lambda kv: -kv[1][1])[:top]
    for (site, func, shapes), (calls, own, pool) in ranked:
        print(
            f"| {site} | {func} | {shapes} | {calls / steps:.0f} "
            f"| {own / steps * 1e3:.2f} | {pool / steps * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()
