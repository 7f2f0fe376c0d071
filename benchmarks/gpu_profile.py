"""Where a tracked step's host time goes on a GPU: synchronizations and a profile.

For each problem and configuration, after ``--warmup`` steps:

* the CUDA operations that synchronize the host with the device during ``--steps``
  tracked steps (``torch.cuda.set_sync_debug_mode("warn")``), counted by the line of
  Python that called them;
* the training thread's cProfile over ``--steps`` steps: top functions by own time
  and by cumulative time;
* with ``--kernels``, the device time of ``--steps`` steps by operator
  (``torch.profiler``, sorted by self device time): where a GPU-bound step's time goes.

One file per problem and configuration goes to ``--output-dir``; a summary (syncs,
the top own-time functions) goes to stdout::

    python benchmarks/gpu_profile.py --problems gpt2_small --configs economy \\
        --output-dir /tmp/profile
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import pstats
import tempfile
import warnings
from pathlib import Path

import torch
from _overhead.configs import CONFIGS, Run, warm_runs
from _overhead.problems import PROBLEMS, make_problem


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def synchronizations(run: Run, batches, steps: int) -> collections.Counter[str]:
    """``{"file:line": count}`` of synchronizing CUDA operations in ``steps`` steps."""
    counts: collections.Counter[str] = collections.Counter()
    if not torch.cuda.is_available():
        return counts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                run.step(batches)
            _synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        if "synchroniz" in str(warning.message):
            counts[f"{warning.filename}:{warning.lineno}"] += 1
    return counts


def profile_text(run: Run, batches, steps: int, top: int) -> str:
    """cProfile of ``steps`` steps, top functions by own and by cumulative time."""
    profiler = cProfile.Profile()
    _synchronize()
    profiler.enable()
    for _ in range(steps):
        run.step(batches)
    _synchronize()
    profiler.disable()
    run.flush()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def kernel_table(run: Run, batches, steps: int, top: int) -> str:
    """Operators of ``steps`` steps by self device time (``torch.profiler``)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    _synchronize()
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            run.step(batches)
        _synchronize()
    run.flush()
    sort = (
        "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    )
    return profiler.key_averages().table(sort_by=sort, row_limit=top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, required=True)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to try it")
    parser.add_argument("--kernels", action="store_true", help="add the device table")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-gpu-profile-") as logdir:
            runs = warm_runs(problem, args.configs, device, logdir, args.warmup)
            for run in runs[1:]:
                syncs = synchronizations(run, problem.batches, args.steps)
                text = profile_text(run, problem.batches, args.steps, args.top)
                if args.kernels:
                    kernels = kernel_table(run, problem.batches, args.steps, args.top)
                    text += "\n" + kernels
                    print(kernels[:6000], flush=True)
                slug = f"{name}-{run.config}".replace("/", "-")
                (args.output_dir / f"profile-{slug}.txt").write_text(
                    f"# {name} {run.config}: synchronizations in {args.steps} steps\n"
                    + "".join(f"{n:5d} {where}\n" for where, n in syncs.most_common())
                    + "\n"
                    + text
                )
                print(f"## {name} {run.config}: {sum(syncs.values())} syncs")
                for where, n in syncs.most_common(6):
                    print(f"  {n:4d} {where}")
                lines = text.splitlines()
                start = next(
                    (i for i, line in enumerate(lines) if "tottime" in line), 0
                )
                print("\n".join(lines[start - 2 : start + 12]), flush=True)
            for run in runs:
                if run.ck is not None:
                    with contextlib.suppress(Exception):
                        run.ck.close()


if __name__ == "__main__":
    main()
