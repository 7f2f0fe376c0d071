"""``ggn_top_eigen``: the largest eigenvalues of the mini-batch GGN."""

from __future__ import annotations

import inspect
from typing import Any

from cockpit._record import OnHost
from cockpit.engines.curvature import CurvatureRequest, check_choice
from cockpit.engines.eigen_solve import EigenRequest
from cockpit.exceptions import ConfigurationError
from cockpit.quantities._gram import GramQuantity
from cockpit.quantities._krylov import WarmStart, check_solver
from cockpit.quantities._view import StepStates
from cockpit.schedules import Schedule
from cockpit.stats.eigen import TopEigen
from cockpit.stats.ggn_eigen import top_eigen

_METHODS = ("gram", "lanczos")


class GgnTopEigen(GramQuantity):
    """The k largest eigenvalues of the GGN ``G = J^T H_z J`` of the mean loss.

    Two methods, logged alike as ``{"1": lambda_1, ..., "k": lambda_k}`` (descending):

    - ``"gram"`` (default; ViViT, Dangel, Tatzel, Hennig 2022): the eigenvalues of
      the ``M n x M n`` Gram matrix ``(1/n) V^T V`` of the GGN's factor over the
      used samples, never the ``D x D`` GGN. With ``exact=False`` the factor is a
      Monte-Carlo one, so the values estimate the GGN of the first ``samples``
      samples. Options and costs: see :class:`~cockpit.quantities._gram.GramQuantity`.
    - ``"lanczos"``: Lanczos on GGN-vector products ``v -> J^T H_z J v`` of the
      whole batch (:func:`~cockpit.engines.hessian.ggn_operator`), matrix-free and
      for any model autograd can differentiate twice: the exact mini-batch GGN, no
      factor and no per-sample Jacobians. The tracker replays the step's forward pass
      (as for ``hess_max_ev``); each iteration costs about three backward passes and
      reads two numbers on the host. It stops when all k estimates moved by at most
      ``tol`` (relative) in one iteration, and also logs ``"iterations"``,
      ``"converged"`` and ``"residual"`` (the largest Ritz residual of the k). Each
      solve starts from the sum of the last step's k eigenvector estimates, so a Krylov
      space from it holds all k directions at once. A single start vector finds
      one copy of a repeated eigenvalue.

    Args:
        schedule: When it is due.
        k: How many of the largest eigenvalues.
        exact: ``"gram"`` only: exact loss-Hessian factor instead of Monte-Carlo.
        mc_samples: ``"gram"`` only: Monte-Carlo columns per sample.
        samples: ``"gram"`` only: use the first ``samples`` samples (``None``: all).
        method: ``"gram"`` or ``"lanczos"``.
        tol: ``"lanczos"`` only: relative change of the estimates at which to stop.
        max_iter: ``"lanczos"`` only: at most this many GGN-vector products (>= k).

    """

    name = "ggn_top_eigen"

    def __init__(
        self,
        schedule: Schedule | int = 1,
        k: int = 4,
        exact: bool = False,
        mc_samples: int = 1,
        samples: int | None = 32,
        method: str = "gram",
        tol: float = 1e-3,
        max_iter: int = 30,
    ):
        self.method = check_choice("method", method, _METHODS)
        gram = {"exact": exact, "mc_samples": mc_samples, "samples": samples}
        krylov = {"tol": tol, "max_iter": max_iter}
        self._refuse_other_options(gram if method == "lanczos" else krylov)
        if method == "lanczos":
            gram["samples"] = None  # no factor: no rank bound from its columns
        super().__init__(schedule, k, **gram)
        if method == "lanczos":
            check_solver(self.name, tol, max_iter, k)
            self.states = frozenset({"eigen"})
        self.tol, self.max_iter = tol, max_iter
        self._warm = WarmStart(self.name, tol)

    def _refuse_other_options(self, given: dict[str, Any]) -> None:
        """Options of the other method must keep their defaults: they would be ignored."""
        defaults = inspect.signature(GgnTopEigen).parameters
        changed = {k: v for k, v in given.items() if v != defaults[k].default}
        if changed:
            other = "gram" if self.method == "lanczos" else "lanczos"
            names = ", ".join(f"{k}={v!r}" for k, v in changed.items())
            raise ConfigurationError(
                f"ggn_top_eigen: {names} only applies to method='{other}', but "
                f"method='{self.method}'. Drop {', '.join(changed)}, or pass "
                f"method='{other}'."
            )

    def options(self) -> dict[str, Any]:
        if self.method == "gram":
            return {**super().options(), "method": self.method}
        return {
            "k": self.k,
            "method": self.method,
            "tol": self.tol,
            "max_iter": self.max_iter,
        }

    def amend_curvature(self, request: CurvatureRequest) -> None:
        if self.method == "gram":
            super().amend_curvature(request)

    def eigen_request(self) -> EigenRequest | None:
        if self.method == "gram":
            return None
        return EigenRequest(
            "ggn", "lanczos", self.tol, self.max_iter, self.k, self._warm.start
        )

    def finalize(self, states: StepStates):
        if self.method == "lanczos":
            return self._lanczos(states["eigen"][self.name])

        def finish(gram, cross, n, rtol):
            values, _ = top_eigen(gram, n, self.k)
            return {str(i + 1): float(v) for i, v in enumerate(values)}

        return self.gram_on_host(states, finish)

    def _lanczos(self, result: TopEigen) -> dict[str, Any]:
        self._warm.keep(result)
        top = OnHost(lambda: self._warm.report(result, result.value), ())
        rest = {str(i + 1): v for i, v in enumerate(result.values[1:], start=1)}
        return {
            "1": top,
            **rest,
            "iterations": result.iterations,
            "converged": result.converged,
            "residual": result.residual,
        }
