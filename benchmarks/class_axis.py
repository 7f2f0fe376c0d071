"""Unreduced cross-entropy with the class axis second (as given) or moved last.

``LossCapture`` recomputes the user's loss unreduced for the per-sample losses. A
sequence model's loss often takes ``logits.transpose(1, 2)`` (``[N, C, T]``), for
which CUDA runs a slow "spatial" softmax kernel (``benchmarks/results/gpu-h200/``).
This times the per-sample losses four ways, medians of ``--repeats``: recomputed as
given; on ``movedim(1, -1)`` (a copy, then the softmax over the last axis); as
``logsumexp(x, 1) - x[target]`` (two reductions over the class axis where it is,
no softmax kernel; plain class-index targets only); and read from the user's graph
(:func:`cockpit._graph_losses.elementwise_from_graph`, a gather from the
log-probabilities autograd saved, what ``LossCapture`` does since 2026-12-01; the
user's own forward is not timed). It prints the largest relative difference of each
to the first::

    .venv/bin/python benchmarks/class_axis.py --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional

from cockpit import _graph_losses
from cockpit._graph_losses import elementwise_from_graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["8,4096,256", "8,50257,64"],
        help="N,C,T of the logits [N, C, T]",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    _graph_losses.MIN_ELEMENTS = 0  # time the graph route at every size
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    print(
        "| shape [N, C, T] | as given ms | class axis last ms | logsumexp ms "
        "| from the graph ms | max rel. diff (last, logsumexp, graph) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for n, c, t in (map(int, shape.split(",")) for shape in args.shapes):
        x = torch.randn(n, c, t, generator=gen, device=device)
        y = torch.randint(c, (n, t), generator=gen, device=device)
        loss_fn = nn.CrossEntropyLoss()
        output = loss_fn(x.requires_grad_(), y)  # the user's forward, with its graph

        def given(x=x, y=y):
            return functional.cross_entropy(x, y, reduction="none")

        def last(x=x, y=y, c=c):
            moved = x.movedim(1, -1).reshape(-1, c)
            return functional.cross_entropy(
                moved, y.reshape(-1), reduction="none"
            ).view(y.shape)

        def by_logsumexp(x=x, y=y):
            picked = x.gather(1, y.unsqueeze(1)).squeeze(1)
            return torch.logsumexp(x, 1) - picked

        def from_graph(loss_fn=loss_fn, output=output, y=y):
            return elementwise_from_graph(loss_fn, output, y)

        with torch.no_grad():
            reference = given()
            diffs = [
                ((fn() - reference).abs() / reference.abs()).max().item()
                for fn in (last, by_logsumexp, from_graph)
            ]
        times = {given: [], last: [], by_logsumexp: [], from_graph: []}
        for _ in range(args.repeats):
            for fn in times:
                sync()
                start = time.perf_counter()
                with torch.no_grad():
                    fn()
                sync()
                times[fn].append(1e3 * (time.perf_counter() - start))
        medians = " | ".join(f"{statistics.median(v):.3f}" for v in times.values())
        print(f"| {n}, {c}, {t} | {medians} | {', '.join(f'{d:.1e}' for d in diffs)} |")


if __name__ == "__main__":
    main()
