"""Tensor operations per training step, plain and tracked: a cost count immune to noise.

On a shared CPU wall-clock ratios move by tens of percent between runs; the number of
ATen operations a step dispatches does not, and for small models the tracker's cost is
mostly the fixed host work of each operation. Counts every operation dispatched during
``--steps`` steps (after ``--warmup``) of the overhead benchmark's problems
(``_overhead/problems.py``) with a ``TorchDispatchMode``, plain and under each
configuration::

    .venv/bin/python benchmarks/op_count.py --problems deep_mlp mlp 3c3d --configs economy

``--flops`` counts instead the floating-point operations of the matrix products and
convolutions (``torch.utils.flop_counter.FlopCounterMode``; element-wise operations
and reductions are not counted): the arithmetic the tracker adds::

    .venv/bin/python benchmarks/op_count.py --flops --problems 3c3d --configs economy

Run it at two commits to compare them.

``--device-chunks`` counts the CPU run with the chunk bound of other devices
(``layer_stats.DEVICE_CHUNK_ELEMENTS`` as the CPU's ``CHUNK_ELEMENTS``) and the batch
replay's rows stacked as there (``batch_replay.UNSTACKED_DEVICES`` emptied): the
operations, and so the kernel launches, that the chunked routes (convolutions, the
batch replay's loop route) dispatch per step on a GPU, counted on a machine without
one::

    .venv/bin/python benchmarks/op_count.py --problems 3c3d --configs economy business --device-chunks
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _overhead.configs import CONFIGS, PLAIN, Run, build_run
from _overhead.problems import PROBLEMS, Problem, make_problem
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from cockpit.engines import batch_replay, layer_stats


class _Counter(TorchDispatchMode):
    """Counts the ATen operations dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(
    run: Run, problem: Problem, steps: int, warmup: int, flops: bool = False
) -> float:
    """Mean ATen operations (or FLOP) per step of ``run`` (writer flushed around)."""
    for _ in range(warmup):
        run.step(problem.batches)
    run.flush()
    with FlopCounterMode(display=False) if flops else _Counter() as counter:
        for _ in range(steps):
            run.step(problem.batches)
    run.flush()
    count = counter.get_total_flops() if flops else counter.count
    return count / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["mlp"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["economy"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--flops", action="store_true", help="count GFLOP instead")
    parser.add_argument(
        "--device-chunks",
        action="store_true",
        help="chunk and stack replayed rows as on a GPU",
    )
    args = parser.parse_args()
    if args.device_chunks:
        layer_stats.CHUNK_ELEMENTS = layer_stats.DEVICE_CHUNK_ELEMENTS
        batch_replay.UNSTACKED_DEVICES = frozenset()
    device = torch.device("cpu")
    unit, scale = ("GFLOP", 1e9) if args.flops else ("ATen ops", 1)
    print(f"| problem | config | {unit} per step | extra over plain | ratio to plain |")
    print("|---|---|---:|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, device)
        with tempfile.TemporaryDirectory(prefix="cockpit-ops-") as logdir:
            plain = None
            for config in [PLAIN, *(c for c in args.configs if c != PLAIN)]:
                run = build_run(problem, config, device, logdir)
                ops = ops_per_step(run, problem, args.steps, args.warmup, args.flops)
                ops /= scale
                if run.ck is not None:
                    run.ck.close()
                plain = ops if plain is None else plain
                digits = 2 if args.flops else 0
                print(
                    f"| {name} | {config} | {ops:.{digits}f} | "
                    f"{ops - plain:.{digits}f} | {ops / plain:.2f} |"
                )


if __name__ == "__main__":
    main()
