"""Unreduced cross-entropy with the class axis second (as given) or moved last.

``LossCapture`` recomputes the user's loss unreduced for the per-sample losses. A
sequence model's loss often takes ``logits.transpose(1, 2)`` (``[N, C, T]``), for
which CUDA runs a slow "spatial" softmax kernel (``benchmarks/results/gpu-h200/``).
This times the recomputation as given and on ``movedim(1, -1)`` (a copy, then the
softmax over the last axis), medians of ``--repeats``, and prints the largest
relative difference of the two::

    .venv/bin/python benchmarks/class_axis.py --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device=device).manual_seed(0)
    print("| shape [N, C, T] | as given ms | class axis last ms | max rel. diff |")
    print("|---|---:|---:|---:|")
    for n, c, t in [(8, 4096, 256), (8, 50257, 64)]:
        x = torch.randn(n, c, t, generator=gen, device=device)
        y = torch.randint(c, (n, t), generator=gen, device=device)

        def given(x=x, y=y):
            return functional.cross_entropy(x, y, reduction="none")

        def last(x=x, y=y, c=c):
            moved = x.movedim(1, -1).reshape(-1, c)
            return functional.cross_entropy(
                moved, y.reshape(-1), reduction="none"
            ).view(y.shape)

        a, b = given(), last()
        diff = ((a - b).abs() / a.abs()).max().item()
        times = {given: [], last: []}
        for _ in range(args.repeats):
            for fn in times:
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[fn].append(1e3 * (time.perf_counter() - start))
        given_ms, last_ms = (statistics.median(v) for v in times.values())
        print(f"| {n}, {c}, {t} | {given_ms:.1f} | {last_ms:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
