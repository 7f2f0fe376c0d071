"""``kfac_block``'s host work: the eigenvalues of one record's Kronecker factors.

Records the factors a ``kfac_block`` record of a problem carries (one tracked step
after ``--warmup`` steps, as the writer receives them: float64 arrays), then times
ways to get every factor's eigenvalues, interleaved over ``--repeats`` rounds: the
median CPU milliseconds of the calling thread (``time.thread_time``) and of the
whole process (``time.process_time``, which also counts the threads a BLAS starts)::

    .venv/bin/python benchmarks/kfac_eigen.py --problem 3c3d

Routes: ``numpy, default BLAS threads`` (the writer before it held BLAS to one
thread), ``numpy, one BLAS thread``, ``one BLAS thread, equal factors once`` (the
writer now: :func:`cockpit.stats.curvature.factor_eigenvalues`), and
``torch.linalg.eigvalsh`` (MKL here) in float64 and float32 on one thread. Also
printed: each factor's size and how many are repeats of an earlier one, and per
route the largest relative difference, over the factors, from the first route of
the numbers ``kfac_block`` logs products of: each factor's largest eigenvalue, its
sum, and its smallest above the round-off floor ``d * eps32 * largest``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from _overhead.configs import build_run
from _overhead.problems import PROBLEMS, make_problem

from cockpit._host_blas import one_blas_thread
from cockpit._record import OnHost
from cockpit.stats.curvature import factor_eigenvalues


def recorded_factors(name: str, warmup: int) -> list[np.ndarray]:
    """The factors of the last ``kfac_block`` record (``kfac_block`` every step)."""
    problem = make_problem(name, torch.device("cpu"))
    items: list = []
    with tempfile.TemporaryDirectory(prefix="cockpit-eigen-") as logdir:
        run = build_run(problem, "kfac_block", torch.device("cpu"), logdir)
        assert run.ck is not None
        submit = run.ck.writer.submit
        run.ck.writer.submit = lambda item: (items.append(item), submit(item))[1]
        for _ in range(warmup + 1):
            run.step(problem.batches)
        run.ck.close()
    node = next(
        i.values["kfac_block"]
        for i in reversed(items)
        if isinstance(getattr(i, "values", {}).get("kfac_block"), OnHost)
    )
    return [t.detach().double().numpy() for t in node.tensors]


def routes(factors: list[np.ndarray]) -> dict[str, Callable[[], list]]:
    def numpy_each() -> list[np.ndarray]:
        return [np.linalg.eigvalsh(f) for f in factors]

    def numpy_one_thread() -> list[np.ndarray]:
        with one_blas_thread():
            return numpy_each()

    def writer() -> list[np.ndarray]:
        with one_blas_thread():
            return factor_eigenvalues(factors)

    def torch_dtype(dtype: torch.dtype) -> Callable[[], list]:
        tensors = [torch.from_numpy(f).to(dtype) for f in factors]
        return lambda: [torch.linalg.eigvalsh(t) for t in tensors]

    return {
        "numpy, default BLAS threads": numpy_each,
        "numpy, one BLAS thread": numpy_one_thread,
        "one BLAS thread, equal factors once": writer,
        "torch float64, one thread": torch_dtype(torch.float64),
        "torch float32, one thread": torch_dtype(torch.float32),
    }


def factor_numbers(values: np.ndarray) -> np.ndarray:
    """Largest eigenvalue, sum, smallest above ``d * eps32 * largest``."""
    values = np.asarray(values, dtype=np.float64)
    floor = len(values) * np.finfo(np.float32).eps * values[-1]
    above = values[values > floor]
    return np.array([values[-1], values.sum(), above[0] if len(above) else 0.0])


def largest_difference(spectra: list, reference: list) -> float:
    """The largest relative difference of :func:`factor_numbers` over the factors."""
    worst = 0.0
    for got, want in zip(spectra, reference, strict=True):
        a, b = factor_numbers(got), factor_numbers(want)
        worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    factors = recorded_factors(args.problem, args.warmup)
    repeats = sum(
        any(f.shape == g.shape and np.array_equal(f, g) for g in factors[:i])
        for i, f in enumerate(factors)
    )
    sizes = ", ".join(str(len(f)) for f in factors)
    print(f"{args.problem}: {len(factors)} factors ({repeats} repeats), sizes {sizes}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    thread: dict[str, list[float]] = {}
    process: dict[str, list[float]] = {}
    results: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, route in routes(factors).items():
            start, start_process = time.thread_time(), time.process_time()
            results[name] = route()
            thread.setdefault(name, []).append(time.thread_time() - start)
            process.setdefault(name, []).append(time.process_time() - start_process)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(
        "| route | thread CPU ms per record | process CPU ms per record "
        "| largest relative difference |"
    )
    print("|---|---:|---:|---:|")
    reference = results[next(iter(results))]
    for name in thread:
        difference = largest_difference(results[name], reference)
        print(
            f"| {name} | {1e3 * statistics.median(thread[name]):.1f} | "
            f"{1e3 * statistics.median(process[name]):.1f} | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
