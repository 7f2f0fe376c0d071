"""The local step-size gauge alpha (Schneider, Dangel, Hennig 2021).

The fit runs on the host (numpy) in the log writer's thread: it is four observations,
and deciding whether a variance is exactly zero needs host values anyway.
"""

from __future__ import annotations

import numpy as np

#: Stands in for a noise variance of exactly 0 so its weight stays finite.
TINY_VARIANCE = 1e-12


def fit_quadratic(
    tau: float,
    losses: tuple[float, float],
    slopes: tuple[float, float],
    loss_variances: tuple[float, float],
    slope_variances: tuple[float, float],
) -> np.ndarray:
    """Weighted least-squares fit of ``q(x) = c0 + c1 x + c2 x^2`` along the step.

    Observations: ``q(0) = L_t``, ``q(tau) = L_{t+1}``, ``q'(0) = d_t``,
    ``q'(tau) = d_{t+1}``, each weighted by its inverse noise variance. Variances must
    already be positive (see :data:`TINY_VARIANCE`).

    Args:
        tau: Step length ``||theta_{t+1} - theta_t||``.
        losses: ``(L_t, L_{t+1})``.
        slopes: ``(d_t, d_{t+1})``, directional derivatives along the step.
        loss_variances: Sample variances of the per-sample losses at both ends.
        slope_variances: Sample variances of the per-sample directional derivatives.

    Returns:
        ``[3]``, the coefficients ``(c0, c1, c2)``.

    """
    design = np.array(
        [[1.0, 0.0, 0.0], [1.0, tau, tau**2], [0.0, 1.0, 0.0], [0.0, 1.0, 2 * tau]]
    )
    targets = np.array([*losses, *slopes], dtype=float)
    weights = 1.0 / np.array([*loss_variances, *slope_variances], dtype=float)
    sqrt_w = np.sqrt(weights)
    # Scaling rows by sqrt(w) turns the weighted problem into an ordinary one.
    coeffs, *_ = np.linalg.lstsq(design * sqrt_w[:, None], targets * sqrt_w, rcond=None)
    return coeffs


def alpha_from_fit(tau: float, coeffs: np.ndarray) -> float:
    """Alpha from the fitted quadratic: ``tau / x_min - 1``, or -1 if not convex.

    ``x_min = -c1 / (2 c2)``. 0 means the step landed in the valley's minimum, -1 that
    it did not move, +1 that it went to the same height on the other side.

    Args:
        tau: Step length.
        coeffs: ``(c0, c1, c2)``.

    Returns:
        Alpha.

    """
    _, c1, c2 = coeffs
    if not c2 > 0:
        return -1.0
    x_min = -c1 / (2 * c2)
    return float(tau / x_min - 1)
