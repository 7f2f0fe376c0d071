"""Step cost as CPU time of the training thread, for machines other processes share.

On a CPU that other processes load, wall-clock steps stretch many times over
(``overhead.py`` repeats such blocks, or waits). The CPU time the training thread
itself spends (``time.thread_time``, with one intra-op thread so that all of a
step's arithmetic runs on it) moves much less. Configurations run interleaved in
shuffled rounds in one process, as in ``overhead.py``; reported are the medians and
their ratios to plain training's. The writer thread's work is not counted. Still
inflated by contention for caches and cores (plain 3c3d: 180 to 240 ms), so compare
ratios from one run::

    .venv/bin/python benchmarks/cpu_time.py --problems 3c3d --configs economy business
    .venv/bin/python benchmarks/cpu_time.py --configs economy --profile  # + cProfile

``--profile`` adds a profile of the tracked steps (cProfile on the thread's CPU
time): the tracker's functions by cumulative time. ``--profile-files REGEX`` chooses
the files whose functions are listed, e.g. BackPACK's derivatives next to the
tracker's engines::

    .venv/bin/python benchmarks/cpu_time.py --configs business --profile \
        --profile-files "cockpit/engines|backpack/core/derivatives"
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time

import torch
from _overhead.configs import CONFIGS, PLAIN, build_run, interleaved_steps
from _overhead.problems import PROBLEMS, make_problem

#: The files ``--profile`` lists by default: the tracker's engines and quantities.
TRACKER_FILES = r"cockpit/(engines|quantities|stats|states)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["3c3d"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-files", default=TRACKER_FILES, metavar="REGEX")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    configs = [PLAIN, *(c for c in args.configs if c != PLAIN)]
    for name in args.problems:
        problem = make_problem(name, device)
        times: dict[str, list[float]] = {c: [] for c in configs}
        with tempfile.TemporaryDirectory(prefix="cockpit-cpu-") as logdir:
            runs = {c: build_run(problem, c, device, logdir) for c in configs}
            for config, run in interleaved_steps(
                runs, problem, args.rounds, args.steps
            ):
                start = time.thread_time()
                run.step(problem.batches)
                times[config].append(time.thread_time() - start)
            plain = statistics.median(times[PLAIN])
            print(f"\n{name}: median CPU ms per step (training thread, 1 thread)\n")
            print("| config | CPU ms | ratio to plain |\n|---|---:|---:|")
            for config in configs:
                median = statistics.median(times[config])
                print(f"| {config} | {median * 1e3:.1f} | {median / plain:.2f} |")
            if args.profile:
                for config in configs[1:]:
                    _profile(
                        runs[config], problem, config, args.steps, args.profile_files
                    )
            for run in runs.values():
                if run.ck is not None:
                    run.ck.close()


def _profile(run, problem, config: str, steps: int, files: str) -> None:
    """The tracker's functions by cumulative CPU time over ``steps`` steps."""
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for _ in range(steps):
        run.step(problem.batches)
    profiler.disable()
    run.flush()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(files, 25)
    print(f"\n{config}: cProfile over {steps} steps (CPU seconds)\n\n```")
    print(out.getvalue().split("\n\n", 2)[-1].strip())
    print("```")


if __name__ == "__main__":
    main()
