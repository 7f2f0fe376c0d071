"""The default overhead budget over a long run: total wall time and what was logged.

For each problem (default ``3c3d`` and ``transformer``, built as in ``overhead.py``)
two trainings run side by side on the same batches from the same weights: ``plain``
(no Cockpit) and ``budget`` (``cockpit.Cockpit`` with neither preset nor quantities:
the economy preset's quantities under the default 5 % budget). They alternate in
blocks of ``--block`` steps until each has run ``--steps`` steps; each block is timed
with ``time.perf_counter`` around its steps (zero_grad, forward, backward, step,
``torch.cuda.synchronize()`` on a GPU), and a budget block also waits for its writer
to be idle inside the timed span, so the writer's work is counted, never pushed into
a plain block. Before each block the script waits (at most ``--patience`` seconds in
all) for other processes to leave the CPUs quiet (``_overhead/timing.py``'s
``CpuMonitor``), and it records the share of the CPUs other processes used during
each block; the table's ``contended`` column counts blocks above the threshold.

Printed per problem: the ratio of the total times (budget / plain, the target is at
most 1.07), the measured share that the tracker logged last (the run's, calibration
included) and the plan in
``meta.json``, and per economy quantity how many steps logged it and the longest gap
between two of them (the target: at most 50)::

    .venv/bin/python benchmarks/budget.py
    .venv/bin/python benchmarks/budget.py --problems 3c3d --steps 200 --block 25
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from _overhead.configs import BUDGET, PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, make_problem
from _overhead.report import log
from _overhead.timing import CpuMonitor

import cockpit
from cockpit.presets import PRESETS


def timed_block(run: Run, problem: Any, steps: int, monitor: CpuMonitor) -> tuple:
    """Seconds for ``steps`` steps (writer idle at the end), others' CPU share."""
    monitor.wait_for_quiet()
    before = monitor.snapshot()
    sync = torch.cuda.synchronize if problem.batches[0][0].is_cuda else None
    start = time.perf_counter()
    for _ in range(steps):
        run.step(problem.batches)
    run.flush()
    if sync:
        sync()
    seconds = time.perf_counter() - start
    return seconds, monitor.others_share(before, monitor.snapshot())


def logged_steps(run_dir: Path) -> dict[str, list[int]]:
    """Log key -> the steps whose records hold it."""
    found: dict[str, list[int]] = {}
    for record in cockpit.LogReader(run_dir).read_new():
        for key in record["values"]:
            found.setdefault(key, []).append(record["step"])
    return found


def coverage(steps: dict[str, list[int]], total: int) -> dict[str, dict[str, int]]:
    """Per economy quantity: how many steps logged it and the longest gap.

    The gap counts from step 0 and to the last step too, so a quantity that stops
    being logged shows it.
    """
    rows = {}
    for key in PRESETS["economy"]:
        at = sorted(set(steps.get(key, [])))
        bounds = [0, *at, total - 1] if at else [0, total - 1]
        gap = max(b - a for a, b in itertools.pairwise(bounds))
        rows[key] = {"logged": len(at), "longest_gap": gap}
    return rows


def run_problem(name: str, args: argparse.Namespace, logdir: str) -> dict[str, Any]:
    device = torch.device(args.device)
    problem = make_problem(name, device)
    runs = {c: build_run(problem, c, device, logdir) for c in (PLAIN, BUDGET)}
    monitor = CpuMonitor(args.contention_threshold, args.patience)
    seconds = {PLAIN: 0.0, BUDGET: 0.0}
    contended = {PLAIN: 0, BUDGET: 0}
    done = 0
    while done < args.steps:
        steps = min(args.block, args.steps - done)
        for config, run in runs.items():
            spent, others = timed_block(run, problem, steps, monitor)
            seconds[config] += spent
            contended[config] += monitor.contended(others)
        done += steps
        log(f"{name}: {done}/{args.steps} steps")
    ck = runs[BUDGET].ck
    assert ck is not None
    ck.close()
    meta = json.loads((ck.run_dir / "meta.json").read_text())
    steps = logged_steps(ck.run_dir)
    return {
        "ratio": seconds[BUDGET] / seconds[PLAIN],
        "seconds": seconds,
        "contended_blocks": contended,
        "blocks": -(-args.steps // args.block),
        "last_overhead_share": (steps and _last_share(ck.run_dir)),
        "plan": meta["budget"],
        "coverage": coverage(steps, args.steps),
    }


def _last_share(run_dir: Path) -> float | None:
    shares = [
        r["values"]["overhead_share"]
        for r in cockpit.LogReader(run_dir).read_new()
        if "overhead_share" in r["values"]
    ]
    return shares[-1] if shares else None


def report(name: str, result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"### {name}: budget / plain = {result['ratio']:.3f}",
        "",
        f"plain {result['seconds'][PLAIN]:.1f} s, budget "
        f"{result['seconds'][BUDGET]:.1f} s over {result['blocks']} blocks each; "
        f"contended blocks plain {result['contended_blocks'][PLAIN]}, budget "
        f"{result['contended_blocks'][BUDGET]}; last logged overhead_share "
        f"{result['last_overhead_share']}; plan at step {plan['planned_at']}: "
        f"planned share {plan['planned_share']}, last period's share "
        f"{plan['measured_share']}, plain step {plan['plain_step_ms']} "
        f"ms, over budget {plan['over_budget']}",
        "",
        "| quantity | interval (last plan) | steps logged | longest gap |",
        "|---|---|---|---|",
    ]
    for key, row in result["coverage"].items():
        lines.append(
            f"| {key} | {plan['intervals'].get(key)} | {row['logged']} | "
            f"{row['longest_gap']} |"
        )
    return "\n".join(lines)


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The options, shared with ``budget_account.py``."""
    parser = argparse.ArgumentParser(description=description.split("\n", 1)[0])
    parser.add_argument(
        "--problems", nargs="+", choices=PROBLEMS, default=["3c3d", "transformer"]
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--block", type=int, default=25, help="steps per timed block")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--contention-threshold", type=float, default=0.15)
    parser.add_argument("--patience", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def parse_args(
    argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if min(args.steps, args.block) < 1:
        parser.error("--steps and --block must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as logdir:
        for name in args.problems:
            results[name] = run_problem(name, args, logdir)
            print(report(name, results[name]) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
