"""``hess_max_ev``: the largest eigenvalue of the mini-batch loss Hessian."""

from __future__ import annotations

from typing import Any

from cockpit._record import OnHost
from cockpit.engines.curvature import check_choice
from cockpit.engines.eigen_solve import EigenRequest
from cockpit.logs.schema import TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._krylov import WarmStart, check_solver
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule

_SOLVERS = ("lanczos", "power")


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
    states = frozenset({"eigen"})

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

    def eigen_request(self) -> EigenRequest:
        return EigenRequest(
            "hessian", self.method, self.tol, self.max_iter, start=self._warm.start
        )

    def finalize(self, states: StepStates) -> dict[str, Any]:
        result = states["eigen"][self.name]
        self._warm.keep(result)
        return {
            TOTAL: OnHost(lambda: self._warm.report(result, result.value), ()),
            "iterations": result.iterations,
            "converged": result.converged,
            "residual": result.residual,
        }
