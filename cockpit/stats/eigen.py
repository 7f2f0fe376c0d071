"""Largest eigenvalues of a symmetric operator given only its matrix-vector product.

Used for the Hessian's top eigenvalue (``hess_max_ev``) with Hessian-vector products
and for the GGN's top eigenvalues (``ggn_top_eigen(method="lanczos")``) with
GGN-vector products; pure functions of ``matvec`` and a start vector, so they are
tested on explicit matrices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cockpit.exceptions import ConfigurationError

MatVec = Callable[[Tensor], Tensor]


@dataclass
class TopEigen:
    """Result of an iterative eigensolver.

    Attributes:
        value: The estimate of the (largest) eigenvalue.
        vector: ``[D]`` unit vector, its eigenvector estimate.
        iterations: Matrix-vector products used.
        converged: Whether every estimate changed by at most ``tol * |value|`` in the
            last iteration, or every residual is at most ``max_error`` times its
            estimate, or the Krylov space closed (exact eigenpairs).
        residual: ``||A x - value x||`` for the returned ``x`` (Lanczos: the exact
            Ritz residual ``|beta_k y_k|`` of the Krylov recurrence, the largest of
            the ``k`` requested); it bounds the distance of ``value`` to *some*
            eigenvalue of A (see :func:`lanczos` for when that is the largest).
        values: The ``k`` largest estimates, descending (``[value]`` for k = 1).
        restart: ``[D]`` where the next solve on a nearby operator should start:
            the sum of the ``k`` unit eigenvector estimates (``vector`` for k = 1),
            so that a Krylov space from it holds all k directions at once.

    """

    value: float
    vector: Tensor
    iterations: int
    converged: bool
    residual: float
    values: list[float]
    restart: Tensor


def lanczos(
    matvec: MatVec,
    start: Tensor,
    tol: float,
    max_iter: int,
    k: int = 1,
    generator: torch.Generator | None = None,
    max_error: float | None = None,
) -> TopEigen:
    """Largest (algebraic) eigenvalues by Lanczos with full re-orthogonalization.

    The Krylov space of ``m`` products holds the best approximation of the top
    eigenvectors of degree ``m``, so Lanczos needs far fewer products than power
    iteration, and it targets the largest eigenvalue even when a negative one has a
    larger magnitude. The estimates (the top ``k`` Ritz values ``theta_{i,m}``) grow
    toward the eigenvalues with m; it stops when every one moved by at most
    ``tol |theta_{i,m}|`` in the last iteration (for k = 1 the criterion of
    PyHessian, Yao et al. 2020), or when the Krylov space closes. Each iteration
    reads two numbers on the host (``alpha_m``, ``beta_m``) for the small
    tridiagonal matrix. A single start vector finds one copy of a repeated
    eigenvalue only: the next estimate is the next distinct eigenvalue. If the
    Krylov space closes before it holds k directions (a start vector that is
    already an eigenvector), a random direction orthogonal to it continues the
    search, so k estimates always come back (at most ``D``).

    The error bound: for a symmetric A and a unit Ritz vector ``x_i`` with Ritz value
    ``theta_i``, the residual ``r_i = ||A x_i - theta_i x_i|| = |beta_m y_{m,i}|``
    (free: the last entry of the small eigenvector ``y_i``) bounds the distance from
    ``theta_i`` to *some* eigenvalue of A (the residual bound for symmetric
    matrices, a case of Bauer-Fike). The top Ritz value is a Rayleigh quotient, so ``theta_1 <=
    lambda_max`` always; when the eigenvalue within ``r_1`` is ``lambda_max`` (the
    Krylov space has resolved the top eigenvalue; with a cluster at the top or a start
    nearly orthogonal to its eigenvector it can be the next one, and no finite test
    certifies which) ``lambda_max`` lies in ``[theta_1, theta_1 + r_1]``. With ``max_error`` the solve also stops as soon as
    every ``r_i <= max_error |theta_i|``: a looser rule than a settled estimate (the
    estimate's error is about ``r^2 / gap``, far below ``r`` once it converges),
    and one whose bound is returned, never an estimate that only stopped moving.

    Args:
        matvec: ``v [D] -> A v [D]`` for a symmetric A.
        start: ``[D]`` start vector (e.g. the last step's eigenvector).
        tol: Relative change of the estimates at which to stop.
        max_iter: At most this many products.
        k: How many of the largest eigenvalues to estimate.
        generator: Draws the direction after an early closure (default: one
            seeded with 0 on ``start``'s device; never the global random state).
        max_error: Also stop once every Ritz residual is at most ``max_error``
            times its estimate's magnitude (``None``: only the rule on ``tol``).

    """
    if max_iter < k:
        raise ConfigurationError(
            f"lanczos needs max_iter >= {k}, got {max_iter}: each product adds one "
            f"estimate, and k={k} are asked for."
        )
    # Rows filled as the space grows (a view of the first m, never a stacked copy
    # per iteration); pages of rows a solve never reaches are not touched.
    basis = start.new_empty(max_iter, start.numel())
    basis[0] = start / start.norm()
    previous = np.zeros(0)
    alphas: list[float] = []
    betas: list[float] = []
    for m in range(1, max_iter + 1):
        w = matvec(basis[m - 1])
        alphas.append(float(basis[m - 1] @ w))
        stacked = basis[:m]
        for _ in range(2):  # twice keeps the basis orthogonal to working precision
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        if not (math.isfinite(alphas[-1]) and math.isfinite(beta)):
            return _nonfinite(start, m, k)
        values, vectors = _tridiagonal_eigen(alphas, betas)
        thetas = values[::-1][:k]
        closed = beta <= _BREAKDOWN * abs(thetas[0])
        if closed and m < min(k, start.numel()):
            generator = generator or torch.Generator(start.device).manual_seed(0)
            betas.append(0.0)  # the tridiagonal matrix splits into blocks
            basis[m] = _orthogonal_direction(stacked, generator)
            continue
        settled = m > k and bool(
            np.all(np.abs(thetas - previous) <= tol * np.abs(thetas))
        )
        previous = thetas
        top = vectors[:, ::-1][:, :k]  # [m, k], unit columns
        residuals = np.abs(beta * top[-1])  # [k]: ||A x_i - theta_i x_i||
        bounded = (
            max_error is not None
            and m >= k
            and bool(np.all(residuals <= max_error * np.abs(thetas)))
        )
        if settled or bounded or closed or m == max_iter:
            ritz = stacked.T @ torch.as_tensor(
                top.copy(), dtype=w.dtype, device=w.device
            )
            return TopEigen(
                float(thetas[0]),
                ritz[:, 0] / ritz[:, 0].norm(),
                m,
                settled or bounded or closed,
                float(residuals.max()),
                [float(t) for t in thetas],
                ritz.sum(1),
            )
        betas.append(beta)
        basis[m] = w / beta
    raise AssertionError("unreachable")


#: A Krylov space that closes (``beta`` this small) holds an exact eigenvector.
_BREAKDOWN = 1e-12


def _orthogonal_direction(basis: Tensor, generator: torch.Generator) -> Tensor:
    """A random unit vector orthogonal to the rows of ``basis`` (``[m, D]``)."""
    w = torch.randn(
        basis.shape[1], dtype=basis.dtype, device=basis.device, generator=generator
    )
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w / w.norm()


def _nonfinite(start: Tensor, iterations: int, k: int) -> TopEigen:
    """The result when a product is not finite (a NaN in the model or the batch).

    The estimates are NaN (logged as non-finite, never a crash), and the next solve
    starts where this one did.
    """
    nan = float("nan")
    unit = start / start.norm()
    return TopEigen(nan, unit, iterations, False, nan, [nan] * k, start)


def _tridiagonal_eigen(
    alphas: list[float], betas: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the Lanczos matrix ``tridiag(betas, alphas, betas)``."""
    matrix = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return np.linalg.eigh(matrix)


def power_iteration(
    matvec: MatVec,
    start: Tensor,
    tol: float,
    max_iter: int,
    max_error: float | None = None,
) -> TopEigen:
    """Eigenvalue of largest magnitude by power iteration (as in PyHessian).

    ``x <- A x / ||A x||``, ``value = x^T A x``; stops when the value changes by at
    most ``tol * |value|``, or (with ``max_error``) when the residual
    ``||A x - value x||``, which bounds the distance of ``value`` to some eigenvalue,
    is at most ``max_error * |value|``. Converges with the ratio of the two largest
    magnitudes, so slowly when they are close, and to a negative eigenvalue if it
    dominates.

    Args:
        matvec: ``v [D] -> A v [D]`` for a symmetric A.
        start: ``[D]`` start vector.
        tol: Relative change of the value at which to stop.
        max_iter: At most this many products.
        max_error: Also stop once the residual is at most ``max_error * |value|``
            (``None``: only the rule on ``tol``).

    """
    if max_iter < 1:
        raise ConfigurationError(
            f"power iteration needs max_iter >= 1, got {max_iter}."
        )
    x = start / start.norm()
    previous = 0.0
    for k in range(1, max_iter + 1):
        ax = matvec(x)
        value = float(x @ ax)
        if not math.isfinite(value):
            return _nonfinite(start, k, 1)
        residual = float((ax - value * x).norm())
        settled = k > 1 and abs(value - previous) <= tol * abs(value)
        bounded = max_error is not None and residual <= max_error * abs(value)
        converged = settled or bounded
        previous = value
        if converged or k == max_iter:
            return TopEigen(value, x, k, converged, residual, [value], x)
        x = ax / ax.norm()
    raise AssertionError("unreachable")


__all__ = ["TopEigen", "lanczos", "power_iteration"]
