"""KFAC's input factor of ``Conv2d`` weights: BackPACK's route against the patch route.

On 3c3d's three convolutions (batch 128), ``A = (1/N) sum_n X_n X_n^T`` of the
unfolded input, once as BackPACK's ``KFAC`` computes it (``F.unfold`` and
``einsum("bik,bjk->ij")``) and once as :mod:`cockpit.engines._conv_kfac` does (one
strided copy ``[d, N T]``, the blocks on and below the diagonal of ``P P^T``). CPU
time of this thread per call (``time.thread_time``), medians over ``--repeats``
calls, the two routes interleaved; the multiply-adds of each; and the largest
relative difference of the two results::

    .venv/bin/python benchmarks/conv_kfac.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from backpack.extensions import KFAC
from backpack.extensions.secondorder.hbp.conv2d import HBPConv2d
from torch import Tensor, nn

from cockpit.engines._conv_kfac import BLOCK_ROWS, PatchKFACConv2d

#: 3c3d's convolutions (DeepOBS) and their input sizes.
LAYERS = [
    ("conv1 3->64 k5", lambda: nn.Conv2d(3, 64, 5), 32),
    ("conv2 64->96 k3", lambda: nn.Conv2d(64, 96, 3), 14),
    ("conv3 96->128 k3 same", lambda: nn.Conv2d(96, 128, 3, padding=1), 6),
]

ROUTES: dict[str, Callable[[nn.Conv2d], Tensor]] = {
    "backpack": lambda conv: HBPConv2d()._factors_from_input(KFAC(), conv)[0],
    "patches": lambda conv: PatchKFACConv2d()._factors_from_input(KFAC(), conv)[0],
}


def multiply_adds(conv: nn.Conv2d, route: str) -> float:
    """``N T d^2`` for BackPACK; ``(b + 1) / (2 b)`` of it in ``b`` row blocks."""
    n = conv.input0.shape[0]
    with torch.no_grad():
        positions = conv(conv.input0[:1]).shape[-2:].numel()
    d = conv.weight[0].numel()
    full = n * positions * d * d
    if route == "backpack":
        return full
    blocks = -(-d // BLOCK_ROWS)
    return full * (blocks + 1) / (2 * blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| layer | route | CPU ms | GFLOP (multiply-adds x 2) | rel. difference |")
    print("|---|---|---:|---:|---:|")
    totals = dict.fromkeys(ROUTES, 0.0)
    for name, make, size in LAYERS:
        conv = make()
        conv.input0 = torch.randn(args.batch, conv.in_channels, size, size)
        results = {r: route(conv) for r, route in ROUTES.items()}
        scale = results["backpack"].abs().max()
        difference = float((results["patches"] - results["backpack"]).abs().max())
        times: dict[str, list[float]] = {r: [] for r in ROUTES}
        for _ in range(args.repeats):
            for route, compute in ROUTES.items():
                start = time.thread_time()
                compute(conv)
                times[route].append(1e3 * (time.thread_time() - start))
        for route in ROUTES:
            ms = statistics.median(times[route])
            totals[route] += ms
            gflop = 2 * multiply_adds(conv, route) / 1e9
            print(
                f"| {name} | {route} | {ms:.1f} | {gflop:.2f} | "
                f"{difference / float(scale):.1e} |"
            )
    for route, ms in totals.items():
        print(f"| all three | {route} | {ms:.1f} | | |")


if __name__ == "__main__":
    main()
