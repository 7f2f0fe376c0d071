"""Timing: blocks of timed steps per configuration, checked for CPU contention.

``overhead.py``'s docstring describes the method (rounds, shuffled order, warm-up,
``/proc/stat`` contention check, writer flushed between blocks).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

import cockpit
from _overhead.configs import Run, build_run
from _overhead.problems import SEED, Problem, make_problem
from _overhead.report import log

Snapshot = tuple[int, int, int] | None


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (a no-op on a CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class CpuMonitor:
    """Detects other processes using the CPUs, from ``/proc/stat`` and our own usage.

    On a shared machine a parallel step slows down many times over while another
    process computes (the intra-op threads wait for a descheduled sibling), which no
    statistic over steps can undo. So each timed block is checked: if, while it ran,
    other processes used more than ``threshold`` of all CPUs' time, the block is
    discarded and run again once the CPUs are quiet. Waiting and repeating stop after
    ``patience`` seconds in all; later contended blocks are kept and counted.
    """

    def __init__(self, threshold: float, patience: float):
        self.threshold = threshold
        self.patience = patience
        self.spent = 0.0
        self.available = self.snapshot() is not None

    @staticmethod
    def snapshot() -> tuple[int, int, int] | None:
        """``(total, busy, own)`` clock ticks: all CPUs, all busy, this process."""
        try:
            with open("/proc/stat") as stat:
                ticks = [int(v) for v in stat.readline().split()[1:9]]
            with open("/proc/self/stat") as own_stat:
                own = own_stat.read()
        except (OSError, ValueError):
            return None
        fields = own[own.rindex(")") + 2 :].split()
        total = sum(ticks)
        return total, total - ticks[3] - ticks[4], int(fields[11]) + int(fields[12])

    def others_share(self, before: Snapshot, after: Snapshot) -> float:
        """Share of all CPUs' time that other processes used between two snapshots."""
        if before is None or after is None:
            return 0.0
        total = after[0] - before[0]
        others = (after[1] - before[1]) - (after[2] - before[2])
        # Below 2 ticks (20 ms of one CPU) is noise of the tick accounting.
        return others / total if others >= 2 and total > 0 else 0.0

    def contended(self, share: float) -> bool:
        return self.available and share > self.threshold

    def can_wait(self) -> bool:
        return self.available and self.spent < self.patience

    def wait_for_quiet(self, window: float = 0.25, longest: float = 10.0) -> None:
        """Sleep until a ``window`` passes with the other processes quiet."""
        start = time.perf_counter()
        while self.can_wait() and time.perf_counter() - start < longest:
            before = self.snapshot()
            time.sleep(window)
            if not self.contended(self.others_share(before, self.snapshot())):
                break
        self.spent += time.perf_counter() - start


def timed_block(
    run: Run,
    problem: Problem,
    args: argparse.Namespace,
    sync: Callable[[], None],
    monitor: CpuMonitor,
) -> dict[str, Any]:
    """Warm-up steps, then ``args.steps`` timed steps, repeated while contended."""
    attempts = 0
    while True:
        attempts += 1
        for _ in range(args.warmup):
            run.step(problem.batches)
        sync()
        before = monitor.snapshot()
        times, host = [], []
        for _ in range(args.steps):
            sync()
            t0, h0 = time.perf_counter(), time.thread_time()
            run.step(problem.batches)
            host.append(time.thread_time() - h0)
            sync()
            times.append(time.perf_counter() - t0)
        share = monitor.others_share(before, monitor.snapshot())
        contended = monitor.contended(share)
        if not contended or not monitor.can_wait():
            break
        t0 = time.perf_counter()
        run.flush()
        monitor.spent += sum(times) + time.perf_counter() - t0
        monitor.wait_for_quiet()
    return {
        "times": times,
        "host_times": host,
        "others_share": share,
        "contended": contended,
        "attempts": attempts,
    }


def time_problem(
    name: str,
    configs: list[str],
    args: argparse.Namespace,
    device: torch.device,
    monitor: CpuMonitor,
) -> dict[str, Any]:
    problem = make_problem(name, device)
    log(f"[{name}] {problem.n_params:,} parameters ({problem.n_params / 1e6:.2f} M)")
    sync = synchronizer(device)
    times: dict[str, list[float]] = {c: [] for c in configs}
    host: dict[str, list[float]] = {c: [] for c in configs}
    blocks: list[dict[str, Any]] = []
    rng = random.Random(SEED)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cockpit-overhead-") as logdir:
        runs = {c: build_run(problem, c, device, logdir) for c in configs}
        try:
            for r in range(args.rounds):
                order = list(configs)
                rng.shuffle(order)
                for config in order:
                    run = runs[config]
                    block = timed_block(run, problem, args, sync, monitor)
                    t0 = time.perf_counter()
                    run.flush()
                    block.update(
                        round=r, config=config, flush_s=time.perf_counter() - t0
                    )
                    blocks.append(block)
                    times[config].extend(block["times"])
                    host[config].extend(block["host_times"])
                    note = f", others used {100 * block['others_share']:.0f}% CPU"
                    log(
                        f"[{name} round {r + 1}/{args.rounds}] {config:<22} median "
                        f"{1e3 * statistics.median(block['times']):8.1f} ms "
                        f"(try {block['attempts']}"
                        f"{note if block['contended'] else ''}; "
                        f"{time.perf_counter() - started:4.0f} s elapsed)"
                    )
        finally:
            for run in runs.values():
                if run.ck is not None:
                    run.ck.close()
        solver = {c: solver_effort(r) for c, r in runs.items()}
    return {
        "parameters": problem.n_params,
        "batch_size": len(problem.batches[0][1]),
        "seconds": time.perf_counter() - started,
        "step_times_s": times,
        "host_times_s": host,
        "blocks": blocks,
        "solver": {c: effort for c, effort in solver.items() if effort},
    }


def solver_effort(run: Run) -> dict[str, dict[str, float]]:
    """Matrix-vector products per eigensolver solve and the converged share.

    For each quantity of the run that logs its solver's ``iterations``
    (``hess_max_ev``, ``ggn_top_eigen`` with ``method="lanczos"``).
    """
    if run.ck is None:
        return {}
    logged = cockpit.load(run.ck.run_dir)
    effort = {}
    for name in ("hess_max_ev", "ggn_top_eigen"):
        if f"{name}.iterations" not in set(logged.scalars["quantity"]):
            continue
        iterations = logged.scalar(f"{name}.iterations")
        effort[name] = {
            "solves": len(iterations),
            "mean_products": float(iterations.mean()),
            "max_products": float(iterations.max()),
            "converged_share": float(logged.scalar(f"{name}.converged").mean()),
        }
    return effort
