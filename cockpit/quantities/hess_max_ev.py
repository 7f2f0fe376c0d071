"""``hess_max_ev``: the largest eigenvalue of the mini-batch loss Hessian."""

from __future__ import annotations

from typing import Any

from cockpit._record import OnHost
from cockpit.engines.curvature import check_choice
from cockpit.engines.hessian import hvp_operator
from cockpit.quantities._base import Quantity
from cockpit.quantities._context import TOTAL, StepContext
from cockpit.quantities._krylov import WarmStart, check_solver
from cockpit.schedules import Schedule
from cockpit.stats.eigen import lanczos, power_iteration

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
        check_solver(self.name, tol, max_iter)
        self.tol = tol
        self.max_iter = max_iter
        self._warm = WarmStart(self.name, tol)

    def options(self) -> dict[str, Any]:
        return {"method": self.method, "tol": self.tol, "max_iter": self.max_iter}

    def compute(self, ctx: StepContext) -> dict[str, Any]:
        params = list(ctx.params.values())
        loss = ctx.replayed_loss()
        hvp = hvp_operator(loss, params, ctx.mean_scale)
        solve = _SOLVERS[self.method]
        result = solve(hvp, self._warm.start(params, ctx), self.tol, self.max_iter)
        self._warm.keep(result)
        return {
            TOTAL: OnHost(lambda: self._warm.report(result, result.value), ()),
            "iterations": result.iterations,
            "converged": result.converged,
            "residual": result.residual,
        }
