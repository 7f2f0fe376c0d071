"""Whole tracked steps with a route switched every step, in one process.

On a shared machine two runs of a benchmark differ more than two routes of the
tracker do; alternating the routes step by step in one process and one run gives
both the same machine. Each route is a context manager that switches the tracker to
it (usually by patching one module attribute) for one step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from _overhead.configs import build_run
from _overhead.problems import make_problem

#: Route name -> a context manager factory that switches the tracker to it.
Routes = dict[str, Callable[[], AbstractContextManager]]


def route_arguments(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark of routes: per call on 3c3d's layers, or tracked.

    ``--threads``, ``--batch``, ``--columns`` (V, the backpropagated factor's
    columns per sample), ``--repeats`` (per-call medians) and ``--tracked STEPS``
    (whole steps by :func:`alternate` instead).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--columns", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tracked", type=int, metavar="STEPS")
    return parser


def alternate(problem_name: str, config: str, routes: Routes, steps: int) -> None:
    """Print median thread CPU and wall ms per step of each route, taken in turn.

    ``steps`` tracked steps of ``config`` on the CPU after one warm-up step per
    route; step ``i`` runs route ``i % len(routes)``. With more than one intra-op
    thread the wall time is the one to read (the thread's CPU time leaves out the
    other threads' work).
    """
    problem = make_problem(problem_name, torch.device("cpu"))
    names = list(routes)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="cockpit-routes-") as logdir:
        run = build_run(problem, config, torch.device("cpu"), logdir)
        for name in names:
            with routes[name]():
                run.step(problem.batches)  # warm-up
        for step in range(steps):
            name = names[step % len(names)]
            with routes[name]():
                cpu, wall = time.thread_time(), time.perf_counter()
                run.step(problem.batches)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            times[name].append((1e3 * cpu, 1e3 * wall))
        run.flush()
        run.ck.close()
    print(f"{problem_name} {config}, {steps} steps alternating, median ms per step:")
    for name, values in times.items():
        cpu = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        print(f"- {name}: thread CPU {cpu:.1f}, wall {wall:.1f} ({len(values)} steps)")
