"""GGN diagonal of ``Conv2d`` weights: BackPACK's route against the patch route.

On 3c3d's three convolutions (batch 128), the weight's diagonal
``sum_{v, n} (S_vn^T A_n)^2`` from a random backpropagated factor ``S`` with ``V``
columns per sample (1: ``DiagGGNMC``, as ``business`` runs it; 10: ``DiagGGNExact`` on
10 classes), once as BackPACK computes it (``F.unfold`` and ``einsum``) and once as
:mod:`cockpit.engines._conv_diag_ggn` does (strided patches, chunked ``bmm``). CPU
time of this thread per call (``time.thread_time``, so other processes on a shared
machine inflate it less than wall time), medians over ``--repeats`` calls, the two
routes interleaved; and the largest relative difference of the two results::

    .venv/bin/python benchmarks/conv_diag_ggn.py --threads 1

With ``--tracked STEPS``, instead, whole ``business`` steps of the overhead
benchmark's 3c3d (``_overhead``), the route switched every step in one process
(BackPACK's by making :func:`~cockpit.engines._conv_diag_ggn.patch_route` refuse
every layer): the medians of the training thread's CPU time and of the wall time
per step (with more than one thread the wall time is the one to read)::

    .venv/bin/python benchmarks/conv_diag_ggn.py --threads 1 --tracked 12
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from _overhead.routes import alternate, route_arguments
from backpack.utils import conv as backpack_conv
from torch import Tensor, nn

from cockpit.engines import _conv_diag_ggn
from cockpit.engines._conv_diag_ggn import weight_diagonal

#: 3c3d's convolutions (DeepOBS) and their input sizes.
LAYERS = [
    ("conv1 3->64 k5", lambda: nn.Conv2d(3, 64, 5), 32),
    ("conv2 64->96 k3", lambda: nn.Conv2d(64, 96, 3), 14),
    ("conv3 96->128 k3 same", lambda: nn.Conv2d(96, 128, 3, padding=1), 6),
]


def backpack_route(module: nn.Conv2d, factor: Tensor) -> Tensor:
    """BackPACK's ``DiagGGNConvND.weight``."""
    unfolded = backpack_conv.unfold_input(module, module.input0)
    return backpack_conv.extract_weight_diagonal(module, unfolded, factor)


def thread_ms(
    route: Callable[[nn.Conv2d, Tensor], Tensor], module: nn.Conv2d, factor: Tensor
) -> float:
    """CPU milliseconds of this thread for one call of ``route``."""
    start = time.thread_time()
    route(module, factor)
    return 1e3 * (time.thread_time() - start)


@contextmanager
def backpack_everywhere() -> Iterator[None]:
    """BackPACK's route at every layer: :func:`patch_route` refuses them all."""
    patch_route = _conv_diag_ggn.patch_route
    _conv_diag_ggn.patch_route = lambda module: False
    try:
        yield
    finally:
        _conv_diag_ggn.patch_route = patch_route


def main() -> None:
    parser = route_arguments(__doc__.split("\n", 1)[0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.tracked:
        routes = {"BackPACK": backpack_everywhere, "patches": nullcontext}
        alternate("3c3d", "business", routes, args.tracked)
        return
    print(f"intra-op threads: {args.threads}, batch {args.batch}")
    print("| layer | V | BackPACK ms | patches ms | ratio | max rel. difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for columns in args.columns:
        for name, make, size in LAYERS:
            module = make()
            module.input0 = torch.randn(args.batch, module.in_channels, size, size)
            with torch.no_grad():
                factor = torch.randn(columns, *module(module.input0).shape)
            old, new = backpack_route(module, factor), weight_diagonal(module, factor)
            difference = ((old - new).abs().max() / old.abs().max()).item()
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.repeats):
                times["old"].append(thread_ms(backpack_route, module, factor))
                times["new"].append(thread_ms(weight_diagonal, module, factor))
            old_ms = statistics.median(times["old"])
            new_ms = statistics.median(times["new"])
            print(
                f"| {name} | {columns} | {old_ms:.1f} | {new_ms:.1f} | "
                f"{new_ms / old_ms:.2f} | {difference:.1e} |"
            )


if __name__ == "__main__":
    main()
