"""``tic_trace``: the Takeuchi information criterion from traces."""

from __future__ import annotations

from typing import Any

import torch

from cockpit.quantities._context import TOTAL, StepContext
from cockpit.quantities._diagonal import DiagonalQuantity
from cockpit.schedules import Schedule
from cockpit.stats.curvature import TIC_EPS, tic_trace


class TicTrace(DiagonalQuantity):
    """``tr(M) / (tr(H) + eps)`` (Thomas et al. 2020), total and per parameter.

    ``tr(M) = (1/N) sum_n ||g_n||^2`` (per-sample norms, no element-wise moments),
    ``tr(H)`` from the chosen curvature diagonal
    (shared with ``hess_trace``). The total uses the network's traces.

    Args:
        schedule: When it is due.
        curvature: The curvature diagonal (see ``hess_trace``).
        eps: Added to the trace (default 1e-7, QUANTITIES.md).

    """

    name = "tic_trace"
    needs_per_sample = True

    def __init__(
        self, schedule: Schedule | int = 1, curvature: str = "ggn_mc", eps=TIC_EPS
    ):
        super().__init__(schedule, curvature)
        self.eps = eps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "eps": self.eps}

    def compute(self, ctx: StepContext) -> dict:
        diagonal = ctx.curvature_diagonal(self.curvature)
        values = {
            name: tic_trace(ctx.layers[name].sq_norms, diag, self.eps)
            for name, diag in diagonal.items()
        }
        total = tic_trace(
            ctx.stats[TOTAL].sq_norms,
            torch.stack([d.sum() for d in diagonal.values()]),
            self.eps,
        )
        return {TOTAL: total, "per_layer": values}
