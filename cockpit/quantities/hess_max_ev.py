"""``hess_max_ev``: the largest eigenvalue of the mini-batch loss Hessian."""

from __future__ import annotations

from typing import Any

from cockpit._record import OnHost
from cockpit.engines.curvature import check_choice
from cockpit.engines.eigen_solve import EigenRequest
from cockpit.exceptions import ConfigurationError
from cockpit.logs.schema import TOTAL
from cockpit.quantities._base import Quantity
from cockpit.quantities._krylov import WarmStart, check_solver
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule

_SOLVERS = ("lanczos", "power")
_STARTS = ("gradient", "previous")


class HessMaxEv(Quantity):
    """Top eigenvalue of the Hessian of the mean loss, from Hessian-vector products.

    The tracker replays the step's forward pass on the kept inputs with the same
    random state (:mod:`cockpit.engines.hessian`; the user passes no
    ``create_graph``) and runs an eigensolver on ``v -> H v``: ``"lanczos"``
    (default; the largest algebraic eigenvalue) or ``"power"`` iteration (the
    eigenvalue of largest magnitude, as in PyHessian, Yao et al. 2020). Each solve
    starts from the step's mini-batch gradient (``start="gradient"``, the default):
    gradients lie mostly in the top eigenspace of the Hessian (Gur-Ari, Roberts, Dyer
    2018), and on 3c3d, where every step draws a new batch, Lanczos then settled
    after about 8 instead of 13 products per solve
    (``benchmarks/results/fullcurv/``). ``start="previous"`` starts from the previous
    step's eigenvector, which wins when the Hessian changes little between steps (the
    same batch again, full-batch training). A zero or non-finite gradient falls back
    to the previous eigenvector (a random vector at the first step). Cost: one
    forward and one backward pass
    with graph, then one Hessian-vector product (about two backward passes) per
    iteration; when the top eigenvalues lie close together Lanczos needs many
    iterations, which is why the ``full`` preset runs it every 10th step. A
    sum-reduced loss's Hessian is divided by N. On a GPU each iteration reads two
    numbers on the host (the stopping test).

    Stopping and the error bound: the logged ``residual`` ``r = ||H x - lambda x||``
    of the returned unit vector x bounds the distance from ``lambda`` to some
    eigenvalue of H; with Lanczos ``lambda`` is a Rayleigh quotient, so
    ``lambda <= lambda_max``, and when the eigenvalue within r is the top one
    ``lambda_max`` lies in ``[lambda, lambda + r]``; with clustered top eigenvalues or
    a start nearly orthogonal to the top eigenvector it can be the next one, and no
    finite Krylov test rules that out. The solve stops at the first of two rules:
    the residual rule ``r <= max_error |lambda|`` (default ``max_error=0.04``, the
    bound it stops on is the one logged), or the estimate changing by at most
    ``tol`` (relative) in one iteration, as PyHessian does (its true error may exceed
    ``tol``; ``r`` still bounds the distance to an eigenvalue). From the gradient
    start the residual rule stops first on 3c3d: 5.8 instead of 7.8 products per
    solve, with the value within 0.4 % of the converged one and ``r`` at most 4 % of
    it (``benchmarks/lanczos_rules.py``); on the tiny test problems against their
    exact Hessians the bracket ``[lambda, lambda + r]`` held lambda_max in all 90
    solves of ``benchmarks/eigen_bracket.py`` with 0.04 and 0.03, and missed it in 2
    with 0.05 (a top eigenvalue the Krylov space had not yet seen, the value within
    4.4 % of the second one). ``max_error=None`` keeps only the rule on ``tol``.
    Logged as ``{"total": lambda, "iterations": k, "converged": bool, "residual":
    r}``; a solve that reaches ``max_iter`` first is logged with ``converged:
    false`` (and the first one in a run raises a warning).

    Args:
        schedule: When it is due.
        method: ``"lanczos"`` or ``"power"``.
        tol: Relative change of the estimate at which the solve stops.
        max_iter: At most this many Hessian-vector products per step.
        max_error: Relative size of the residual bound at which the solve also
            stops (``None``: only the rule on ``tol``).
        start: ``"gradient"`` or ``"previous"``: where each solve starts.

    """

    name = "hess_max_ev"
    states = frozenset({"eigen"})

    def __init__(
        self,
        schedule: Schedule | int = 1,
        method: str = "lanczos",
        tol: float = 1e-3,
        max_iter: int = 20,
        max_error: float | None = 0.04,
        start: str = "gradient",
    ):
        super().__init__(schedule)
        self.method = check_choice("method", method, _SOLVERS)
        self.start = check_choice("start", start, _STARTS)
        check_solver(self.name, tol, max_iter)
        if max_error is not None and not max_error > 0:
            raise ConfigurationError(
                f"hess_max_ev needs max_error > 0 (a relative residual bound, e.g. "
                f"0.04, the default) or None, got max_error={max_error!r}."
            )
        self.tol = tol
        self.max_iter = max_iter
        self.max_error = max_error
        self._warm = WarmStart(self.name, tol)

    def options(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "start": self.start,
            "max_error": self.max_error,
        }

    def eigen_request(self) -> EigenRequest:
        return EigenRequest(
            "hessian",
            self.method,
            self.tol,
            self.max_iter,
            start=self._warm.start,
            max_error=self.max_error,
            from_gradient=self.start == "gradient",
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
