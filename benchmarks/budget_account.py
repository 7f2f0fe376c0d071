"""Where the default budget's extra time goes, step by step, in CPU time and counts.

``budget.py`` compares total wall times, which other processes on a shared machine
inflate. This script trains one problem twice on the same batches, ``plain`` and
``budget`` (the default Cockpit), alternating in blocks of ``--block`` steps, and
records for every step its wall time, the process's CPU time (all threads: the
training thread, torch's intra-op threads and the log writer) and the writer
thread's CPU time, plus which quantities the step tracked. CPU time is what waiting
for the CPUs does not inflate (busy intra-op threads still count), so the accounting
holds on a loaded machine better than wall time; both are printed.

The budget run's extra CPU time over ``plain``'s median step, summed by part:

- ``calibration``: the tracked steps before the first plan (step 0 tracks
  everything, step 1 ends ``alpha``, then the probes);
- ``planned, tracked``: the tracked steps of the plans, grouped by set;
- ``untracked``: the untracked steps (``track()`` and the optimizer's watch around
  plain training: should be about zero);
- ``writer``: the writer thread's CPU time over the whole run.

Their sum over ``steps x plain`` is the run's measured share; next to it the plan's
own figures from ``meta.json`` (the planned share and its measured shares), so
what the planner predicts can be held against what happened. The options are
``budget.py``'s (``--patience`` waits for quiet CPUs before each block).

``--counts`` times nothing: it counts each step's ATen operations and FLOP (matrix
products and convolutions, ``torch.utils.flop_counter``) on the training thread,
which no load changes, for the budget run's first ``--steps`` steps and a plain
step, and sums the calibration's and the plans' extra in plain steps::

    .venv/bin/python benchmarks/budget_account.py --problems 3c3d --steps 200
    .venv/bin/python benchmarks/budget_account.py --patience 0 --json out.json
    .venv/bin/python benchmarks/budget_account.py --counts --steps 62
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from _overhead.configs import BUDGET, PLAIN, Run, build_run
from _overhead.problems import Problem, make_problem
from _overhead.timing import CpuMonitor
from budget import build_parser, parse_args
from op_count import _Counter
from torch.utils.flop_counter import FlopCounterMode


def step_costs(run: Run, problem: Problem) -> dict[str, Any]:
    """One step of ``run``: wall, process CPU and writer CPU seconds, what it tracked."""
    writer = run.ck.writer.cpu_seconds if run.ck else 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    run.step(problem.batches)
    row = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "writer": (run.ck.writer.cpu_seconds - writer) if run.ck else 0.0,
    }
    if run.ck is not None:
        row["tracked"] = sorted(run.ck._last_tracked)
    return row


def interleaved(runs: dict[str, Run], problem: Problem, args) -> dict[str, list]:
    """Per configuration, one row per step, in alternating blocks of steps."""
    monitor = CpuMonitor(args.contention_threshold, args.patience)
    rows: dict[str, list] = {config: [] for config in runs}
    done = 0
    while done < args.steps:
        steps = min(args.block, args.steps - done)
        for config, run in runs.items():
            monitor.wait_for_quiet()
            rows[config] += [step_costs(run, problem) for _ in range(steps)]
            run.flush()
        done += steps
        print(f"{problem.name}: {done}/{args.steps} steps, load {_load()}", flush=True)
    return rows


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def account(rows: dict[str, list], start: int) -> dict[str, Any]:
    """The budget run's extra CPU and wall seconds, by part (module docstring)."""
    plain = {k: statistics.median(r[k] for r in rows[PLAIN]) for k in ("wall", "cpu")}
    parts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_set: dict[str, list[dict[str, float]]] = defaultdict(list)
    for step, row in enumerate(rows[BUDGET]):
        part = "untracked"
        if row["tracked"]:
            part = "calibration" if step < start else "planned, tracked"
        if row["tracked"] and step >= start:
            by_set[_label(row["tracked"])].append(row)
        parts[part]["steps"] += 1
        # The writer's seconds are counted once, as their own part.
        parts[part]["cpu"] += row["cpu"] - row["writer"] - plain["cpu"]
        parts[part]["wall"] += row["wall"] - plain["wall"]
    writer = sum(r["writer"] for r in rows[BUDGET])
    untracked = [r for r in rows[BUDGET] if not r["tracked"]]
    parts["writer"] = {"steps": 0, "cpu": writer, "wall": 0.0}
    n = len(rows[BUDGET])
    totals = {
        k: {c: sum(r[k] for r in rows[c]) for c in (PLAIN, BUDGET)}
        for k in ("wall", "cpu")
    }
    return {
        "steps": n,
        "plain_step_ms": {k: 1000 * v for k, v in plain.items()},
        "parts_ms": {
            p: {k: v if k == "steps" else 1000 * v for k, v in d.items()}
            for p, d in parts.items()
        },
        "share_of_plain_run": {
            p: {k: d[k] / (n * plain[k]) for k in ("cpu", "wall")}
            for p, d in parts.items()
        },
        "ratio": {k: t[BUDGET] / t[PLAIN] for k, t in totals.items()},
        "untracked_step_ms": {
            k: 1000 * statistics.median([r[k] for r in untracked] or [float("nan")])
            for k in ("wall", "cpu")
        },
        "tracked_sets": {
            label: {
                "steps": len(found),
                "median_extra_cpu_ms": 1000
                * (
                    statistics.median(r["cpu"] - r["writer"] for r in found)
                    - plain["cpu"]
                ),
            }
            for label, found in sorted(by_set.items())
        },
    }


def _label(tracked: list[str]) -> str:
    return ", ".join(tracked) if len(tracked) <= 3 else f"{len(tracked)} quantities"


def report(name: str, found: dict[str, Any], plan: dict[str, Any]) -> str:
    lines = [
        f"### {name}: {found['steps']} steps, budget / plain: CPU "
        f"{found['ratio']['cpu']:.3f}, wall {found['ratio']['wall']:.3f}",
        "",
        f"plain step (median): CPU {found['plain_step_ms']['cpu']:.1f} ms, wall "
        f"{found['plain_step_ms']['wall']:.1f} ms; untracked step of the budget run "
        f"(median): CPU {found['untracked_step_ms']['cpu']:.1f} ms, wall "
        f"{found['untracked_step_ms']['wall']:.1f} ms; load {_load()}",
        "",
        "| part | steps | extra CPU ms | share of the plain run (CPU) | (wall) |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, row in found["parts_ms"].items():
        share = found["share_of_plain_run"][part]
        lines.append(
            f"| {part} | {row['steps']:.0f} | {row['cpu']:.0f} | "
            f"{100 * share['cpu']:.2f} % | {100 * share['wall']:.2f} % |"
        )
    lines += ["", "| tracked set (after calibration) | steps | median extra CPU ms |"]
    lines.append("|---|---:|---:|")
    for label, row in found["tracked_sets"].items():
        lines.append(f"| {label} | {row['steps']} | {row['median_extra_cpu_ms']:.1f} |")
    lines += [
        "",
        f"plan (meta.json): calibration steps {plan['calibration_steps']}, planned "
        f"at {plan['planned_at']}, intervals {plan['intervals']}, planned share "
        f"{plan['planned_share']}, measured share {plan['measured_share']}, "
        f"run share {plan.get('run_share')}, plain step {plan['plain_step_ms']} ms, "
        f"costs {plan['costs_ms']}, scale {plan['cost_scale']}",
    ]
    return "\n".join(lines)


def counted(run: Run, problem: Problem, steps: int) -> list[dict[str, Any]]:
    """ATen operations, FLOP and tracked quantities of each of ``steps`` steps."""
    rows = []
    for _ in range(steps):
        with FlopCounterMode(display=False) as flop, _Counter() as ops:
            run.step(problem.batches)
        tracked = sorted(run.ck._last_tracked) if run.ck else []
        rows.append(
            {"ops": ops.count, "flop": flop.get_total_flops(), "tracked": tracked}
        )
    run.flush()
    return rows


def count_report(name: str, plain: dict, rows: list[dict], start: int) -> str:
    """Per calibration step and in sum, the extra work in plain steps."""
    lines = [
        f"### {name}: counts (plain step: {plain['ops']} ATen ops, "
        f"{plain['flop']:.4g} FLOP)",
        "",
        "| steps | tracked | extra ATen ops / plain step | extra FLOP / plain step |",
        "|---|---|---:|---:|",
    ]

    def extra(part: list[dict], key: str) -> float:
        return sum(r[key] - plain[key] for r in part) / plain[key]

    for step, row in enumerate(rows[:start]):
        lines.append(
            f"| {step} | {_label(row['tracked']) or '-'} | "
            f"{extra([row], 'ops'):.2f} | {extra([row], 'flop'):.2f} |"
        )
    for label, part in (("calibration", rows[:start]), ("after", rows[start:])):
        lines.append(
            f"| {label} ({len(part)}) | sum | {extra(part, 'ops'):.2f} | "
            f"{extra(part, 'flop'):.2f} |"
        )
    return "\n".join(lines)


def count_problem(name: str, args, logdir: str) -> dict[str, Any]:
    """The ``--counts`` mode for one problem (module docstring)."""
    device = torch.device(args.device)
    problem = make_problem(name, device)
    runs = {c: build_run(problem, c, device, logdir) for c in (PLAIN, BUDGET)}
    plain = counted(runs[PLAIN], problem, 2)[-1]  # the first also counts warm-up
    rows = counted(runs[BUDGET], problem, args.steps)
    ck = runs[BUDGET].ck
    assert ck is not None
    ck.close()
    plan = json.loads((ck.run_dir / "meta.json").read_text())["budget"]
    start = plan["calibration_steps"]
    print(count_report(name, plain, rows, start), flush=True)
    return {"plain": plain, "rows": rows, "calibration_steps": start, "plan": plan}


def account_problem(name: str, args, logdir: str) -> dict[str, Any]:
    """Train ``name`` plain and under the budget; the accounting and the plan."""
    device = torch.device(args.device)
    problem = make_problem(name, device)
    runs = {c: build_run(problem, c, device, logdir) for c in (PLAIN, BUDGET)}
    rows = interleaved(runs, problem, args)
    ck = runs[BUDGET].ck
    assert ck is not None
    ck.close()
    plan = json.loads((ck.run_dir / "meta.json").read_text())["budget"]
    return {**account(rows, plan["calibration_steps"]), "plan": plan, "rows": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser(__doc__)
    parser.add_argument("--counts", action="store_true", help="count, do not time")
    args = parse_args(argv, parser)
    results = {}
    with tempfile.TemporaryDirectory() as logdir:
        for name in args.problems:
            if args.counts:
                results[name] = count_problem(name, args, logdir)
                continue
            results[name] = account_problem(name, args, logdir)
            print(report(name, results[name], results[name]["plan"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
