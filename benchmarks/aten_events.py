"""ATen operations per step as ``torch.profiler`` records them, by name.

``op_count.py`` counts what is *dispatched*: a ``torch._foreach_*`` call or an
``unbind`` is one operation there, although on a CPU the first runs one kernel per
tensor and the second makes one ``select`` per row. The profiler records those
inner operations too, which is where a tracked step's per-tensor cost shows::

    .venv/bin/python benchmarks/aten_events.py --problems deep_mlp mlp --configs economy

Counts ``--steps`` steps after ``--warmup`` (one intra-op thread) and prints the
events per step, in total and for the most frequent names. Deterministic: the
counts do not depend on the machine's load (the times the profiler also records
do, and are not printed).
"""

from __future__ import annotations

import argparse
import collections
import tempfile

import torch
from _overhead.configs import CONFIGS, build_run
from _overhead.problems import PROBLEMS, make_problem
from torch.profiler import ProfilerActivity, profile


def events_per_step(
    problem_name: str, config: str, steps: int, warmup: int
) -> collections.Counter[str]:
    """``aten::`` events per step of one configuration, by name."""
    device = torch.device("cpu")
    problem = make_problem(problem_name, device)
    with tempfile.TemporaryDirectory(prefix="cockpit-events-") as logdir:
        run = build_run(problem, config, device, logdir)
        for _ in range(warmup):
            run.step(problem.batches)
        run.flush()
        with profile(activities=[ProfilerActivity.CPU]) as recorded:
            for _ in range(steps):
                run.step(problem.batches)
        run.flush()
        if run.ck is not None:
            run.ck.close()
    counts: collections.Counter[str] = collections.Counter()
    for event in recorded.key_averages():
        if event.key.startswith("aten::"):
            counts[event.key] += event.count
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["mlp"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| problem | config | ATen events per step | most frequent (per step) |")
    print("|---|---|---:|---|")
    for name in args.problems:
        for config in args.configs:
            counts = events_per_step(name, config, args.steps, args.warmup)
            top = ", ".join(
                f"{key.removeprefix('aten::')} {count / args.steps:.0f}"
                for key, count in counts.most_common(args.top)
            )
            total = counts.total() / args.steps
            print(f"| {name} | {config} | {total:,.0f} | {top} |")


if __name__ == "__main__":
    main()
