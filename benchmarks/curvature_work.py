"""The work of a tracked step with costly curvature: forward passes, graphs, products.

Wall-clock ratios on a shared CPU move by tens of percent between runs; the number of
forward passes of the model, of backward passes that build a graph for second
derivatives, and of matrix-vector products a step spends does not. For each problem of
the overhead benchmark (``_overhead/problems.py``) and each configuration
(``_overhead/configs.py``: ``hess_max_ev`` alone, ``full`` with every quantity at
every step, ...), it trains ``--steps`` tracked steps after ``--warmup`` and reports
per step:

* ``forwards``: calls of the model (the user's own, plus every replay of it by the
  tracker; a ``vmap`` over samples counts once per chunk);
* ``graph builds``: ``torch.autograd.grad`` calls with ``create_graph=True`` (each
  one a backward pass that keeps a graph for second derivatives);
* ``grad calls``: all ``torch.autograd.grad`` calls (Hessian- and GGN-vector
  products, per-sample Jacobian rows, ...); the user's ``loss.backward()`` is not one;
* ``products per solve``: the eigensolvers' logged ``iterations`` (mean and largest
  over the solves; ``hess_max_ev`` and ``ggn_top_eigen(method="lanczos")``);
* ``ms per step``: the median wall time of a step (indicative only on a busy CPU).

Run it at two commits to compare them::

    .venv/bin/python benchmarks/curvature_work.py --problems 3c3d mlp \
        --configs hess_max_ev full --output benchmarks/results/hess_max_ev/work.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, Problem, make_problem
from _overhead.timing import solver_effort


class _Counts:
    """Counts model calls and ``torch.autograd.grad`` calls while it is active."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.forwards = self.graphs = self.grads = 0

    def __enter__(self) -> _Counts:
        self._original = torch.autograd.grad
        self._handle = self.model.register_forward_pre_hook(self._forward)

        def counted(*args: Any, **kwargs: Any):
            self.grads += 1
            self.graphs += bool(kwargs.get("create_graph", False))
            return self._original(*args, **kwargs)

        torch.autograd.grad = counted
        return self

    def __exit__(self, *exc: object) -> None:
        torch.autograd.grad = self._original
        self._handle.remove()

    def _forward(self, module: torch.nn.Module, args: tuple) -> None:
        self.forwards += 1


def measure(run: Run, problem: Problem, steps: int, warmup: int) -> dict[str, Any]:
    """Per-step counts, the solvers' effort and the median step time of ``run``."""
    for _ in range(warmup):
        run.step(problem.batches)
    run.flush()
    times = []
    with _Counts(run.model) as counts:
        for _ in range(steps):
            start = time.perf_counter()
            run.step(problem.batches)
            times.append(time.perf_counter() - start)
    run.flush()
    return {
        "forwards": counts.forwards / steps,
        "graphs": counts.graphs / steps,
        "grads": counts.grads / steps,
        "ms": 1000 * statistics.median(times),
        "solver": solver_effort(run),
    }


def _row(problem: str, config: str, found: dict[str, Any]) -> str:
    effort = "; ".join(
        f"{name} {e['mean_products']:.1f} (max {e['max_products']:.0f}, "
        f"{100 * e['converged_share']:.0f}% converged)"
        for name, e in found["solver"].items()
    )
    return (
        f"| {problem} | {config} | {found['forwards']:.1f} | {found['graphs']:.1f} | "
        f"{found['grads']:.1f} | {effort or '-'} | {found['ms']:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["3c3d"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["full"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args()
    device = torch.device("cpu")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"Command: `benchmarks/curvature_work.py --problems {' '.join(args.problems)} "
        f"--configs {' '.join(args.configs)} --steps {args.steps} "
        f"--warmup {args.warmup}` at commit {commit or 'unknown'}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, cpu.",
        "",
        "| problem | config | forwards | graph builds | grad calls "
        "| products per solve | ms per step |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-work-") as logdir:
            for config in [PLAIN, *(c for c in args.configs if c != PLAIN)]:
                torch.manual_seed(0)
                run = build_run(problem, config, device, logdir)
                found = measure(run, problem, args.steps, args.warmup)
                if run.ck is not None:
                    run.ck.close()
                lines.append(_row(name, config, found))
                print(lines[-1], flush=True)
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
