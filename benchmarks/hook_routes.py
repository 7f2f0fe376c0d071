"""The tracked step's two hook routes, on and off, in one process: CPU ms per step.

A tracked step hands ``Linear`` layers' output gradients to the statistics without
BackPACK's per-module dispatch (``direct``, :meth:`PerSampleStats.direct`), and reads
the block's gradient from ``.grad`` as the backward pass ends instead of a tensor
hook per parameter (``read``, ``cockpit/_block_grads.py``). This times economy
steps with each route replaced by the earlier one (BackPACK for every layer; a hook
per parameter), in interleaved rounds in one process so that every variant sees the
same machine; training-thread CPU time, one intra-op thread, the log writer flushed
outside the timed steps; medians over rounds::

    .venv/bin/python benchmarks/hook_routes.py --problems deep_mlp mlp --rounds 7

The earlier routes are restored by patching the two switches' methods for the
duration of a variant's block of steps.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from unittest import mock

import torch
from _overhead.configs import PLAIN, build_run
from _overhead.problems import PROBLEMS, make_problem

from cockpit._block_grads import BlockGradients
from cockpit.engines.backpack_engine import PerSampleStats

#: Variant -> (direct route, read route).
VARIANTS = {
    "both (this commit)": (True, True),
    "BackPACK for Linear": (False, True),
    "hook per parameter": (True, False),
    "neither (before)": (False, False),
}


def _arrive_only(self: BlockGradients) -> BlockGradients:
    self._hook_all()
    return self


@contextlib.contextmanager
def _routes(direct: bool, read: bool) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if not direct:
            stack.enter_context(mock.patch.object(PerSampleStats, "direct", dict))
        if not read:
            patch = mock.patch.object(BlockGradients, "__enter__", _arrive_only)
            stack.enter_context(patch)
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["deep_mlp"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print("| problem | variant | training thread CPU ms per step | ratio to plain |")
    print("|---|---|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-routes-") as logdir:
            runs = {PLAIN: (build_run(problem, PLAIN, device, logdir), (True, True))}
            for i, (variant, switches) in enumerate(VARIANTS.items()):
                # One log directory per variant: the runs share a name.
                run = build_run(problem, "economy", device, f"{logdir}/{i}")
                runs[variant] = (run, switches)
            times: dict[str, list[float]] = {v: [] for v in runs}
            for round_ in range(args.rounds + 1):
                for variant, (run, switches) in runs.items():
                    with _routes(*switches):
                        ms = 0.0
                        for _ in range(args.steps):
                            run.flush()
                            start = time.thread_time()
                            run.step(problem.batches)
                            ms += 1e3 * (time.thread_time() - start)
                    if round_:  # the first round warms up
                        times[variant].append(ms / args.steps)
            plain = statistics.median(times[PLAIN])
            for variant, values in times.items():
                median = statistics.median(values)
                print(f"| {name} | {variant} | {median:.2f} | {median / plain:.2f}x |")
            for run, _ in runs.values():
                if run.ck is not None:
                    run.ck.close()


if __name__ == "__main__":
    main()
