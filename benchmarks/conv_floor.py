"""How far the ``Conv2d`` factor route is from its arithmetic floor, per layer.

Forming every per-sample gradient ``g_n = B_n^T A_n`` of a convolution costs
``N T p d`` multiply-adds, as many as the layer's weight gradient that autograd
computes in every plain step: that gradient's time is the floor of the route.
For each ``Conv2d`` of a problem (its input and output gradient captured from one
tracked ``economy`` step), this times, in the training thread's CPU time with one
intra-op thread (``--threads``), in interleaved rounds (median):

- ``weight grad``: autograd's weight gradient alone (``convolution_backward``);
- ``products``: the route's per-sample products alone (strided patches and one
  batched product per chunk, :func:`~cockpit.engines._conv_factors.unfold_patches`);
- ``reduce``: the whole reduction with ``economy``'s statistics
  (:meth:`~cockpit.engines._conv_factors.ConvFactors.reduce`: products, norms, dots,
  sums of squares, extremes, histogram sample, projection; per-sample gradients kept
  for alpha where ``reduce_all`` keeps them), plus its later projection if not kept::

    .venv/bin/python benchmarks/conv_floor.py --problem 3c3d

``--chunk-elements B [B ...]`` also times ``reduce`` with each bound ``B`` on the
CPU's chunks of the convolution routes (``CPU_CHUNK_SCALE *
layer_stats.CHUNK_ELEMENTS``, 2**21 by default), interleaved with the rest::

    .venv/bin/python benchmarks/conv_floor.py --chunk-elements 262144 1048576 4194304

With ``--threads 2`` the figures are the training thread's share only (the pool's
other thread is not counted): what a step waits for where the work balances.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from _overhead.configs import build_run
from _overhead.problems import PROBLEMS, make_problem

from cockpit.engines import _conv_factors, backpack_engine, layer_stats

ROUTINES = ("weight grad", "products", "reduce")


def captured(problem_name: str) -> tuple[dict, dict, layer_stats.SampleRequest]:
    """The factors, flat gradients and request of one tracked economy step."""
    found: dict = {}
    reduce_all = backpack_engine.reduce_all

    def spy(factors, grads, request):
        found.update(factors=factors, grads=grads, request=request)
        return reduce_all(factors, grads, request)

    backpack_engine.reduce_all = spy
    try:
        problem = make_problem(problem_name, torch.device("cpu"))
        with tempfile.TemporaryDirectory(prefix="cockpit-floor-") as logdir:
            run = build_run(problem, "economy", torch.device("cpu"), logdir)
            run.step(problem.batches)
            run.flush()
            run.ck.close()
    finally:
        backpack_engine.reduce_all = reduce_all
    return found["factors"], found["grads"], found["request"]


def routines(f: _conv_factors.ConvFactors, grad, request, keep: bool) -> dict:
    """The three timed routines of one layer."""
    x = _conv_factors.pad_input(f.x, f.padding, f.padding_mode)
    delta, weight = f.delta, f.param
    n, p, t = delta.shape
    d = weight[0].numel()
    h_out = (x.shape[2] - f.dilation[0] * (weight.shape[2] - 1) - 1) // f.stride[0] + 1
    grad_out = delta.view(n, p, h_out, t // h_out)
    chunk = _conv_factors.chunk_samples(delta.device, n, d * max(t, p))
    buffer = delta.new_empty(chunk, p, d)
    mask = (False, True, False)

    def weight_grad() -> None:
        torch.ops.aten.convolution_backward(
            grad_out,
            x,
            weight,
            None,
            f.stride,
            [0, 0],
            f.dilation,
            False,
            [0, 0],
            1,
            mask,
        )

    def products() -> None:
        for first in range(0, n, chunk):
            rows = slice(first, first + chunk)
            patches = _conv_factors.unfold_patches(
                x[rows], weight.shape[2:], f.dilation, f.stride, t
            )
            out = buffer[: patches.shape[0]]
            torch.bmm(delta[rows], patches.transpose(1, 2), out=out)

    def reduce() -> None:
        stats = f.reduce(grad, request, keep)
        if not keep:
            stats.project(grad)

    return dict(zip(ROUTINES, (weight_grad, products, reduce), strict=True))


def with_chunks(reduce: Callable[[], None], bound: int) -> Callable[[], None]:
    """``reduce`` with ``bound`` elements per chunk on the CPU."""

    def bounded() -> None:
        default = layer_stats.CHUNK_ELEMENTS
        layer_stats.CHUNK_ELEMENTS = bound // _conv_factors.CPU_CHUNK_SCALE
        try:
            reduce()
        finally:
            layer_stats.CHUNK_ELEMENTS = default

    return bounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-elements", nargs="*", type=int, default=[])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    factors, grads, request = captured(args.problem)
    kept = _conv_factors.kept_layers(factors) if request.keep_for_projection else set()
    timed: dict[tuple[str, str], Callable[[], None]] = {}
    for name, f in factors.items():
        for what, routine in routines(f, grads[name], request, name in kept).items():
            timed[name, what] = routine
        for bound in args.chunk_elements:
            timed[name, f"reduce, {bound}"] = with_chunks(timed[name, "reduce"], bound)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in timed}
    rng = random.Random(0)
    for _ in range(args.rounds):
        for key in rng.sample(list(timed), len(timed)):
            start = time.thread_time()
            timed[key]()
            times[key].append(time.thread_time() - start)
    print(
        f"\n{args.problem}: median training-thread CPU ms ({args.threads} intra-op "
        f"threads), {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| layer | weight grad | products | reduce | products / weight grad |")
    print("|---|---:|---:|---:|---:|")
    for name in factors:
        ms = {w: statistics.median(times[name, w]) * 1e3 for w in ROUTINES}
        print(
            f"| {name} | {ms['weight grad']:.1f} | {ms['products']:.1f} | "
            f"{ms['reduce']:.1f} | {ms['products'] / ms['weight grad']:.2f} |"
        )
    if args.chunk_elements:
        bounds = args.chunk_elements
        print("\n`reduce` by elements per chunk, median CPU ms\n")
        print("| layer | " + " | ".join(map(str, bounds)) + " |")
        print("|---|" + "---:|" * len(bounds))
        for name in factors:
            ms = [statistics.median(times[name, f"reduce, {b}"]) * 1e3 for b in bounds]
            print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in ms) + " |")


if __name__ == "__main__":
    main()
