"""Shared base of the quantities built on a curvature diagonal (trace, TIC)."""

from __future__ import annotations

from typing import Any

from cockpit.engines.curvature import DIAGONALS, CurvatureRequest, check_choice
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
            one extension.

    """

    def __init__(self, schedule: Schedule | int = 1, curvature: str = "ggn_mc"):
        super().__init__(schedule)
        self.curvature = check_choice("curvature", curvature, DIAGONALS)

    def amend_curvature(self, request: CurvatureRequest) -> None:
        request.diagonals.add(self.curvature)

    def options(self) -> dict[str, Any]:
        return {"curvature": self.curvature}


class TicQuantity(DiagonalQuantity):
    """A TIC variant: a curvature diagonal, the per-sample gradients, and ``eps``.

    Args:
        schedule: When it is due.
        curvature: The curvature diagonal (see :class:`DiagonalQuantity`).
        eps: Damping of the curvature (default 1e-7, QUANTITIES.md).

    """

    needs_per_sample = True

    def __init__(
        self,
        schedule: Schedule | int = 1,
        curvature: str = "ggn_mc",
        eps: float = TIC_EPS,
    ):
        super().__init__(schedule, curvature)
        self.eps = eps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "eps": self.eps}
