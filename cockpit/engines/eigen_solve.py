"""Top eigenvalues of the loss Hessian or GGN by matrix-free products, on request.

Quantities that need eigenvalues (``hess_max_ev``, ``ggn_top_eigen`` with
``method="lanczos"``) declare an :class:`EigenRequest`; the tracked step replays the
forward pass on the kept inputs and runs the requested solver here. The result (a
:class:`~cockpit.stats.eigen.TopEigen`) becomes the quantity's ``eigen`` state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cockpit.engines.hessian import ggn_operator, hvp_operator
from cockpit.stats.eigen import TopEigen, lanczos, power_iteration

__all__ = ["EigenRequest", "solve"]

_SOLVERS = {"lanczos": lanczos, "power": power_iteration}


@dataclass(frozen=True)
class EigenRequest:
    """One eigensolve a quantity asks for at a step.

    Attributes:
        operator: ``"hessian"`` (``v -> H v``) or ``"ggn"`` (``v -> J^T H_z J v``),
            of the mean loss.
        method: ``"lanczos"`` or ``"power"`` (``"hessian"`` only).
        tol: Relative change of the estimates at which the solve stops.
        max_iter: At most this many matrix-vector products.
        k: How many of the largest eigenvalues (``"ggn"``; the Hessian solve finds 1).
        start: ``[D]`` start vector (a warm start), or ``None`` for a random one.
        max_error: Also stop once the residual bound is at most ``max_error`` times
            the estimate (``"hessian"``; ``None``: only the rule on ``tol``).
        from_gradient: Start from the step's mini-batch gradient ``dL/dtheta``
            instead (``"hessian"``); ``start`` (or a random vector) only if the
            gradient is zero or not finite.

    """

    operator: str
    method: str
    tol: float
    max_iter: int
    k: int = 1
    start: Tensor | None = None
    max_error: float | None = None
    from_gradient: bool = False


@dataclass
class Replay:
    """What a solve needs of the step: the replayed forward pass and the loss.

    Attributes:
        loss_input: Replays the forward pass; returns the loss module's input.
        loss: ``z -> batch loss`` with the step's target.
        gradient: ``dL/dtheta`` of the replayed batch loss with graph, one tensor per
            parameter (shared with Hutchinson's estimator of the same step).
        params: The parameters, in the tracker's order.
        mean_scale: ``1`` for a mean-reduced loss, ``1/N`` for a summed one.
        generator: The tracker's random generator on a device.

    """

    loss_input: Callable[[], Tensor]
    loss: Callable[[Tensor], Tensor]
    gradient: Callable[[], Sequence[Tensor]]
    params: list[nn.Parameter]
    mean_scale: float
    generator: Callable[[torch.device], torch.Generator]


def _start(request: EigenRequest, replay: Replay) -> Tensor:
    """The start vector: the gradient, the warm start or a random vector.

    The gradient if asked for and usable, else the warm start if it fits the
    parameters, else a random vector. The gradient's check reads one number on the host (the solve reads two per
    iteration anyway).
    """
    if request.from_gradient:
        gradient = torch.cat([g.detach().reshape(-1) for g in replay.gradient()])
        norm = float(gradient.norm())
        if math.isfinite(norm) and norm > 0:
            return gradient
    size = sum(p.numel() for p in replay.params)
    if request.start is not None and request.start.numel() == size:
        return request.start
    first = replay.params[0]
    return torch.randn(
        size,
        device=first.device,
        dtype=first.dtype,
        generator=replay.generator(first.device),
    )


def solve(request: EigenRequest, replay: Replay) -> TopEigen:
    """Run the requested solver on the replayed step."""
    params = replay.params
    if request.operator == "hessian":
        products = hvp_operator(replay.gradient(), params, replay.mean_scale)
        start = _start(request, replay)
        solver = _SOLVERS[request.method]
        return solver(
            products,
            start,
            request.tol,
            request.max_iter,
            max_error=request.max_error,
        )
    products = ggn_operator(replay.loss_input(), replay.loss, params, replay.mean_scale)
    start = _start(request, replay)
    generator = replay.generator(start.device)
    return lanczos(products, start, request.tol, request.max_iter, request.k, generator)
