"""``alpha``: where along the valley the optimizer's step landed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cockpit._record import Flagged, Late, Noted, OnHost
from cockpit.quantities._base import Quantity
from cockpit.quantities._view import StepStates
from cockpit.stats import moments
from cockpit.stats.alpha import TINY_VARIANCE, alpha_from_fit, fit_quadratic

_VARIANCE_NAMES = ("loss at t", "loss at t+1", "slope at t", "slope at t+1")


def _finish(observations: np.ndarray) -> float | Flagged | Noted:
    """Host side: the weighted quadratic fit of QUANTITIES.md on 9 numbers.

    ``observations = (tau, L_t, L_t1, d_t, d_t1, var L_t, var L_t1, var d_t, var d_t1)``.
    """
    if not np.all(np.isfinite(observations)):
        return Flagged("non-finite loss or slope at one end of the step")
    tau, *values = observations.tolist()
    losses, slopes, variances = values[0:2], values[2:4], values[4:8]
    zero = [name for name, v in zip(_VARIANCE_NAMES, variances, strict=True) if v <= 0]
    variances = [max(v, TINY_VARIANCE) for v in variances]
    coeffs = fit_quadratic(tau, losses, slopes, variances[:2], variances[2:])
    alpha = alpha_from_fit(tau, coeffs)
    if zero:
        notice = (
            f"alpha: zero noise variance of the {', '.join(zero)} "
            f"(batch of identical samples?) replaced by {TINY_VARIANCE}"
        )
        return Noted(alpha, notice)
    return alpha


@dataclass
class _StartPoint:
    step: int
    loss: Tensor
    loss_variance: Tensor
    slopes: Tensor  # [3] moments of the per-sample slopes (cockpit.stats.moments)
    tau: Tensor
    unit_step: dict[str, Tensor]


class Alpha(Quantity):
    """Normalized step size of Schneider, Dangel, Hennig 2021 for any optimizer.

    Due at step t, alpha needs steps t and t+1 tracked: at t the loss and per-sample
    slopes along the step ``s = theta_{t+1} - theta_t`` that ``optimizer.step()`` then
    takes (the states ``step_slopes``, known once that step is), at t+1 the same
    along ``s`` (``projections`` on the unit step kept from t). The value is logged
    under step t.
    """

    name = "alpha"
    states = frozenset({"losses", "projections"})
    step_states = frozenset({"step", "unit_step", "step_slopes"})

    def __init__(self, schedule=1):
        super().__init__(schedule)
        self._start: _StartPoint | None = None

    def _ends_at(self, step: int) -> bool:
        return self._start is not None and self._start.step == step - 1

    def is_active(self, step: int) -> bool:
        return self.schedule(step) or self._ends_at(step)

    def directions(self, step: int) -> dict[str, Tensor]:
        return self._start.unit_step if self._ends_at(step) else {}

    def finalize(self, states: StepStates) -> Late | None:
        start, self._start = self._start, None
        if start is None or start.step != states.step - 1:
            return None
        slopes = states["projections"]["network"]
        observations = torch.stack(
            [
                start.tau.to(torch.float64),
                start.loss,
                states.loss,
                moments.mean(start.slopes),
                moments.mean(slopes),
                start.loss_variance,
                states.loss_variance,
                moments.variance(start.slopes),
                moments.variance(slopes),
            ]
        )
        return Late(start.step, OnHost(_finish, (observations,)))

    def finalize_step(self, states: StepStates) -> None:
        if not self.schedule(states.step):
            return None
        self._start = _StartPoint(
            step=states.step,
            loss=states.loss,
            loss_variance=states.loss_variance,
            slopes=states["step_slopes"]["network"],
            tau=states["step"].length,
            unit_step=states["unit_step"],
        )
        return None
