"""``hess_max_ev``: the largest eigenvalue of the mini-batch loss Hessian."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cockpit._record import Noted, OnHost
from cockpit.engines.curvature import check_choice
from cockpit.engines.hessian import hvp_operator
from cockpit.exceptions import ConfigurationError
from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext
from cockpit.schedules import Schedule
from cockpit.stats.eigen import TopEigen, lanczos, power_iteration

_SOLVERS = {"lanczos": lanczos, "power": power_iteration}


class HessMaxEv(Quantity):
    """Top eigenvalue of the Hessian of the mean loss, from Hessian-vector products.

    The tracker replays the step's forward pass on the kept inputs with the same
    random state (:mod:`cockpit.engines.hessian`; the user passes no
    ``create_graph``) and runs an eigensolver on ``v -> H v``: ``"lanczos"``
    (default; the largest algebraic eigenvalue) or ``"power"`` iteration (the
    eigenvalue of largest magnitude, as in PyHessian, Yao et al. 2020). Each solve
    starts from the previous step's eigenvector, so on nearby steps a few products
    suffice when the Hessian changes little. It stops when the estimate changes by at
    most ``tol`` (relative) in one iteration, as PyHessian does. Cost: one forward and
    one backward pass with graph, then one Hessian-vector product (about two backward
    passes) per iteration; when the top eigenvalues lie close together Lanczos needs
    many iterations (10-20 on the 3c3d benchmark at initialization), which is why the
    ``full`` preset runs it every 10th step. Logged as ``{"total": lambda,
    "iterations": k, "converged": bool, "residual": ||H x - lambda x||}``; a solve
    that reaches ``max_iter`` first is logged with ``converged: false`` (and the first
    one in a run raises a warning). A sum-reduced loss's Hessian is divided by N. On a
    GPU each iteration reads two numbers on the host (the stopping test).

    Args:
        schedule: When it is due.
        method: ``"lanczos"`` or ``"power"``.
        tol: Relative change of the estimate at which the solve stops.
        max_iter: At most this many Hessian-vector products per step.

    """

    name = "hess_max_ev"
    needs_replay = True

    def __init__(
        self,
        schedule: Schedule | int = 1,
        method: str = "lanczos",
        tol: float = 1e-3,
        max_iter: int = 20,
    ):
        super().__init__(schedule)
        self.method = check_choice("method", method, _SOLVERS)
        if not (isinstance(max_iter, int) and max_iter >= 1) or not tol > 0:
            raise ConfigurationError(
                f"hess_max_ev needs tol > 0 and an int max_iter >= 1, got "
                f"tol={tol!r}, max_iter={max_iter!r}."
            )
        self.tol = tol
        self.max_iter = max_iter
        self._last: Tensor | None = None
        self._warned = False

    def options(self) -> dict[str, Any]:
        return {"method": self.method, "tol": self.tol, "max_iter": self.max_iter}

    def compute(self, ctx: StepContext) -> dict[str, Any]:
        params = list(ctx.params.values())
        loss = ctx.replayed_loss()
        scale = 1.0 if ctx.mean_reduction else 1.0 / ctx.batch_size
        hvp = hvp_operator(loss, params, scale)
        result = _SOLVERS[self.method](
            hvp, self._start(params, ctx), self.tol, self.max_iter
        )
        self._last = result.vector.detach()
        return {
            TOTAL: OnHost(self._report(result), ()),
            "iterations": result.iterations,
            "converged": result.converged,
            "residual": result.residual,
        }

    def _start(self, params: list[torch.nn.Parameter], ctx: StepContext) -> Tensor:
        size = sum(p.numel() for p in params)
        if self._last is not None and self._last.numel() == size:
            return self._last
        first = params[0]
        return torch.randn(
            size,
            device=first.device,
            dtype=first.dtype,
            generator=ctx.generator(first.device),
        )

    def _report(self, result: TopEigen):
        warn = not result.converged and not self._warned
        self._warned |= warn

        def report() -> float | Noted:
            if not warn:
                return result.value
            return Noted(
                result.value,
                f"hess_max_ev did not converge in max_iter={result.iterations} "
                f"iterations (tol={self.tol}); its value is logged with "
                "converged=false, and so are later ones without a warning. Raise "
                "max_iter or tol.",
            )

        return report
