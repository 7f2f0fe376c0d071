"""Shared base of the quantities built on a curvature diagonal (trace, TIC)."""

from __future__ import annotations

from typing import Any

from cockpit.engines.curvature import DIAGONALS, CurvatureRequest, check_choice
from cockpit.exceptions import ConfigurationError
from cockpit.quantities._base import Quantity
from cockpit.schedules import Schedule
from cockpit.stats.curvature import TIC_EPS


class DiagonalQuantity(Quantity):
    """A quantity that reads one curvature diagonal, chosen by ``curvature``.

    Args:
        schedule: When it is due.
        curvature: ``"ggn_mc"`` (default: Monte-Carlo GGN diagonal, about one extra
            backward pass), ``"ggn_exact"`` (exact GGN diagonal, about C extra
            backward passes for C classes) or ``"hessian"`` (exact Hessian diagonal,
            more than C). Quantities due at the same step with the same source share
            one extension. With the torch.func engine (models BackPACK cannot
            handle) the GGN diagonals are computed exactly as BackPACK defines
            them, and ``"hessian"`` is estimated by Hutchinson's method.
        probes: Rademacher probes of Hutchinson's estimator of the Hessian
            diagonal (torch.func engine, ``curvature="hessian"`` only); each costs
            one Hessian-vector product (about two backward passes). The log then
            holds ``probes`` and the trace's ``std_error``.

    """

    states = frozenset({"losses", "diagonals", "mean_reduction"})

    def __init__(
        self, schedule: Schedule | int = 1, curvature: str = "ggn_mc", probes: int = 16
    ):
        super().__init__(schedule)
        self.curvature = check_choice("curvature", curvature, DIAGONALS)
        if not isinstance(probes, int) or probes < 2:
            raise ConfigurationError(
                f"{self.name}: probes must be an int >= 2 (the standard error needs "
                f"two), got {probes!r}."
            )
        self.probes = probes

    def amend_curvature(self, request: CurvatureRequest) -> None:
        request.diagonals.add(self.curvature)
        if self.curvature == "hessian":
            request.probes = max(request.probes, self.probes)

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"curvature": self.curvature}
        if self.curvature == "hessian":
            options["probes"] = self.probes
        return options


class TicQuantity(DiagonalQuantity):
    """A TIC variant: a curvature diagonal, the per-sample gradients, and ``eps``.

    Args:
        schedule: When it is due.
        curvature: The curvature diagonal (see :class:`DiagonalQuantity`).
        eps: Damping of the curvature (default 1e-7, QUANTITIES.md).
        probes: See :class:`DiagonalQuantity`.

    """

    states = DiagonalQuantity.states | {"sq_norms"}

    def __init__(
        self,
        schedule: Schedule | int = 1,
        curvature: str = "ggn_mc",
        eps: float = TIC_EPS,
        probes: int = 16,
    ):
        super().__init__(schedule, curvature, probes)
        self.eps = eps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "eps": self.eps}
