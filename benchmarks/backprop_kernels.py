"""ReLU and max-pooling Jacobians: BackPACK's derivatives against autograd's kernels.

Second-order extensions backpropagate their factor ``M [V, N, ...]`` through every
ReLU and max-pooling layer. On 3c3d's three ReLU+pooling pairs (batch 128), by three
routes: BackPACK's derivatives (ReLU: ``df`` materialized and ``einsum``; pooling:
a second pooling for the indices, ``zeros`` and ``scatter_add_``); ``saved``, the
tracker before autograd's kernels (BackPACK's, on the indices autograd saved); and
``kernels``, the tracker's (:mod:`cockpit.engines._derivatives`:
``threshold_backward``; the max-pooling backward kernel on the saved indices). CPU
time of this thread per call (``time.thread_time``), medians over ``--repeats``
calls, the routes interleaved; the results must be equal bit for bit::

    .venv/bin/python benchmarks/backprop_kernels.py --threads 1

With ``--tracked STEPS``, instead, whole ``business`` steps of the overhead
benchmark's 3c3d, the three routes switched every step in one process
(``_overhead/routes.py``)::

    .venv/bin/python benchmarks/backprop_kernels.py --threads 1 --tracked 12

``--pieces`` adds, to ``--tracked``, the CPU time of this thread per step in each
derivatives class's ``jac_t_mat_prod`` and in the ``Conv2d`` weights' GGN diagonal,
by route.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from _overhead.routes import alternate, route_arguments
from backpack.core.derivatives.basederivatives import BaseDerivatives
from backpack.core.derivatives.maxpoolnd import MaxPoolNDDerivatives
from backpack.core.derivatives.relu import ReLUDerivatives
from torch import Tensor, nn

from cockpit.engines import _derivatives
from cockpit.engines._conv_diag_ggn import PatchDiagGGNConv2d
from cockpit.engines._saved_pool_indices import SavedIndexMaxPool2d

#: 3c3d's ReLU inputs (the convolutions' outputs), each followed by MaxPool2d(2).
SHAPES = [(64, 28, 28), (96, 12, 12), (128, 6, 6)]


class ScatterMaxPool2d(SavedIndexMaxPool2d):
    """The saved indices with BackPACK's ``zeros`` and ``scatter_add_``."""

    _jac_t_mat_prod = MaxPoolNDDerivatives._jac_t_mat_prod


#: Route -> module type -> derivatives class.
ROUTES: dict[str, dict[type[nn.Module], type[BaseDerivatives]]] = {
    "BackPACK": {},
    "saved": {nn.MaxPool2d: ScatterMaxPool2d},
    "kernels": {t: new for t, (_, new) in _derivatives.REPLACEMENTS.items()},
}
BACKPACK = {nn.ReLU: ReLUDerivatives, nn.MaxPool2d: MaxPoolNDDerivatives}


def derivatives(route: str, module: nn.Module) -> BaseDerivatives:
    """The derivatives object ``route`` backpropagates through ``module`` with."""
    kind = type(module)
    if kind in ROUTES[route]:
        return ROUTES[route][kind]()
    return _derivatives.REPLACEMENTS[kind][0]()


#: (route, piece) -> CPU seconds of this thread, with ``--pieces``.
PIECES: dict[tuple[str, str], float] = collections.defaultdict(float)
#: The route :func:`tracker_route` switched to last.
CURRENT = ["none"]
#: Route -> steps it ran (warm-up included).
STEPS: collections.Counter[str] = collections.Counter()


def timed(owner: type, name: str, piece: Callable[[object], str]) -> None:
    """Add the thread CPU time of ``owner.name`` to :data:`PIECES` from now on."""
    method = getattr(owner, name)

    def wrapper(self, *args, **kwargs):
        start = time.thread_time()
        try:
            return method(self, *args, **kwargs)
        finally:
            PIECES[CURRENT[0], piece(self)] += time.thread_time() - start

    setattr(owner, name, wrapper)


@contextmanager
def tracker_route(route: str) -> Iterator[None]:
    """The tracker's curvature extensions on ``route``'s derivatives."""
    CURRENT[0] = route
    STEPS[route] += 1
    replacements = _derivatives.REPLACEMENTS
    _derivatives.REPLACEMENTS = {
        kind: (original, ROUTES[route][kind])
        for kind, (original, _) in replacements.items()
        if kind in ROUTES[route]
    }
    try:
        yield
    finally:
        _derivatives.REPLACEMENTS = replacements


def forward(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` with what BackPACK's hooks store (input, output with its node)."""
    module.input0 = x
    module.output = module(x)
    return module.output


def thread_ms(derivatives: BaseDerivatives, module: nn.Module, mat: Tensor) -> float:
    """CPU milliseconds of this thread for one transposed Jacobian product."""
    start = time.thread_time()
    derivatives.jac_t_mat_prod(module, None, None, mat)
    return 1e3 * (time.thread_time() - start)


def main() -> None:
    parser = route_arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--pieces", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.tracked:
        if args.pieces:
            timed(BaseDerivatives, "jac_t_mat_prod", lambda d: type(d).__name__)
            timed(PatchDiagGGNConv2d, "weight", lambda _: "Conv2d weight diagonal")
        routes = {route: partial(tracker_route, route) for route in ROUTES}
        alternate("3c3d", "business", routes, args.tracked)
        for route in ROUTES if args.pieces else []:
            print(f"{route}, CPU ms per step ({STEPS[route]} steps with the warm-up):")
            for (owner, piece), seconds in sorted(PIECES.items()):
                if owner == route:
                    print(f"- {piece}: {1e3 * seconds / STEPS[route]:.1f}")
        return
    print(f"intra-op threads: {args.threads}, batch {args.batch}")
    print(f"| layer | input | V | {' ms | '.join(ROUTES)} ms |")
    print("|---|---|---:|" + "---:|" * len(ROUTES))
    for columns in args.columns:
        for shape in SHAPES:
            x = torch.randn(args.batch, *shape, requires_grad=True)
            relu, pool = nn.ReLU(), nn.MaxPool2d(2)
            forward(pool, forward(relu, x))
            for module in (relu, pool):
                mat = torch.randn(columns, *module.output.shape)
                routes = {route: derivatives(route, module) for route in ROUTES}
                expected = routes["BackPACK"].jac_t_mat_prod(module, None, None, mat)
                times: dict[str, list[float]] = {route: [] for route in ROUTES}
                for route, made in routes.items():
                    result = made.jac_t_mat_prod(module, None, None, mat)
                    assert torch.equal(result, expected), route
                for _ in range(args.repeats):
                    for route, made in routes.items():
                        times[route].append(thread_ms(made, module, mat))
                medians = " | ".join(
                    f"{statistics.median(t):.1f}" for t in times.values()
                )
                print(
                    f"| {type(module).__name__} | {list(module.input0.shape[1:])} | "
                    f"{columns} | {medians} |"
                )


if __name__ == "__main__":
    main()
