"""Does ``torch.compile`` make the batched ``Linear`` statistics cheaper?

Times the arithmetic of one group reduction of
:mod:`cockpit.engines._linear_factors` (gradient, per-sample squared norms, dots with
the gradient, sums of squares, outer-product extremes, from the stacked factors
``delta [G, N, out]`` and ``x [G, N, in]``) for every group of equal shapes of a
benchmark problem's ``Linear`` layers, eager and compiled (``torch.compile``, static
shapes), in interleaved rounds, and prints the median time per tracked step of each
and the compile time::

    .venv/bin/python benchmarks/compile_stats.py --problems deep_mlp mlp

On a GPU, ``--mode reduce-overhead`` replays each compiled group as a CUDA graph:
one launch instead of some twenty kernels, which is what a host-bound tracked step
(3c3d, the small MLPs) would gain from capturing its statistics. The time is then
taken after ``torch.cuda.synchronize()``, device work included::

    python benchmarks/compile_stats.py --device cuda --mode reduce-overhead \
        --problems mlp deep_mlp 3c3d
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from _overhead.problems import PROBLEMS, make_problem
from torch import Tensor, nn


def group_statistics(delta: Tensor, x: Tensor) -> tuple[Tensor, ...]:
    """The reductions ``_linear_factors._group`` runs for one group."""
    n = delta.shape[1]
    grad = torch.bmm(delta.transpose(1, 2), x).div_(n)
    delta_sq, x_sq = delta**2, x**2
    sq_norms = delta_sq.sum(2) * x_sq.sum(2)
    dots = torch.bmm(delta, grad).mul_(x).sum(2)
    sum_sq = torch.bmm(delta_sq.transpose(1, 2), x_sq)
    d_ends = torch.stack(delta.aminmax(dim=2), dim=2)
    x_ends = torch.stack(x.aminmax(dim=2), dim=2)
    corners = (d_ends[:, :, :, None] * x_ends[:, :, None, :]).flatten(1)
    return grad, sq_norms, dots, sum_sq, *corners.aminmax(dim=1)


def groups(
    model: nn.Module, n: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """Random stacked factors of every group of equal ``Linear`` shapes (and biases)."""
    shapes: Counter = Counter()
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            shapes[(layer.out_features, layer.in_features)] += 1
            shapes[(layer.out_features, 1)] += 1
    return [
        (
            torch.randn(g, n, d_out, device=device),
            torch.randn(g, n, d_in, device=device),
        )
        for (d_out, d_in), g in shapes.items()
    ]


def step_seconds(fn, stacks, repeats: int, device: torch.device) -> float:
    """Seconds per pass over every group, the device's queue drained at both ends."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        for delta, x in stacks:
            fn(delta, x)
    _synchronize(device)
    return (time.perf_counter() - start) / repeats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=["deep_mlp"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--mode", default="default", choices=["default", "reduce-overhead"]
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    print("| problem | groups | eager µs/step | compiled µs/step | compile s |")
    print("|---|---:|---:|---:|---:|")
    for name in args.problems:
        problem = make_problem(name, torch.device("cpu"))
        x, _ = problem.batches[0]
        stacks = groups(problem.make_model(), x.shape[0], device)
        torch._dynamo.reset()
        compiled = torch.compile(group_statistics, dynamic=False, mode=args.mode)
        start = time.perf_counter()
        for _ in range(3):  # CUDA graphs are recorded at the second or third call
            for delta, x_ in stacks:
                compiled(delta, x_)
        _synchronize(device)
        compile_seconds = time.perf_counter() - start
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):
            for key, fn in (("eager", group_statistics), ("compiled", compiled)):
                times[key].append(step_seconds(fn, stacks, args.repeats, device))
        eager, fast = (statistics.median(times[k]) * 1e6 for k in times)
        print(
            f"| {name} | {len(stacks)} | {eager:.0f} | {fast:.0f} | "
            f"{compile_seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
