"""What a fresh CPU tensor above glibc's largest mmap threshold (32 MB) costs.

glibc serves an allocation of more than its mmap threshold (dynamic, at most 32 MB
on 64-bit Linux) with a new mapping and unmaps it when freed, so each such tensor is
faulted in page by page when first written. The same element-wise product of two
``[D]`` float32 tensors, into a fresh tensor at once and in pieces below the
threshold, and into a kept buffer; training thread's CPU time, one intra-op thread,
ms per product (mean of ``--repeats`` after one warm-up)::

    .venv/bin/python benchmarks/fresh_pages.py --elements 11181642
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def ms(run: Callable[[], object], repeats: int) -> float:
    run()
    start = time.thread_time()
    for _ in range(repeats):
        run()
    return 1e3 * (time.thread_time() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--elements", type=int, default=11181642, help="ResNet-18's D")
    parser.add_argument("--pieces", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    a, b = torch.randn(args.elements), torch.randn(args.elements)
    kept = torch.empty(args.elements)
    size = -(-args.elements // args.pieces)
    pieces = list(zip(a.split(size), b.split(size), strict=True))
    mb = 4 * args.elements / 2**20
    print(f"| product of [{args.elements}] float32 ({mb:.0f} MB) | ms |")
    print("|---|---:|")
    routes = {
        "into a fresh tensor": lambda: a * b,
        f"in {args.pieces} fresh pieces": lambda: [x * y for x, y in pieces],
        "into a kept buffer": lambda: torch.mul(a, b, out=kept),
    }
    for route, run in routes.items():
        print(f"| {route} | {ms(run, args.repeats):.2f} |")


if __name__ == "__main__":
    main()
