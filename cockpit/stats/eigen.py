"""Largest eigenvalue of a symmetric operator given only its matrix-vector product.

Used for the Hessian's top eigenvalue (``hess_max_ev``) with Hessian-vector products;
pure functions of ``matvec`` and a start vector, so they are tested on explicit
matrices.
"""

from __future__ import annotations

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
        value: The estimate of the eigenvalue.
        vector: ``[D]`` unit vector, its eigenvector estimate.
        iterations: Matrix-vector products used.
        converged: Whether the estimate changed by at most ``tol * |value|`` in the
            last iteration (or the Krylov space closed: an exact eigenpair).
        residual: ``||A x - value x||`` for the returned ``x`` (Lanczos: the exact
            Ritz residual ``|beta_k y_k|`` of the Krylov recurrence); it bounds the
            distance of ``value`` to *some* eigenvalue of A.

    """

    value: float
    vector: Tensor
    iterations: int
    converged: bool
    residual: float


def lanczos(matvec: MatVec, start: Tensor, tol: float, max_iter: int) -> TopEigen:
    """Largest (algebraic) eigenvalue by Lanczos with full re-orthogonalization.

    The Krylov space of ``k`` products holds the best approximation of the top
    eigenvector of degree ``k``, so Lanczos needs far fewer products than power
    iteration, and it targets the largest eigenvalue even when a negative one has a
    larger magnitude. The estimate (the top Ritz value ``theta_k``) grows toward the
    eigenvalue with k; it stops when ``|theta_k - theta_{k-1}| <= tol |theta_k|``,
    the criterion of PyHessian (Yao et al. 2020). Each iteration reads two numbers on
    the host (``alpha_k``, ``beta_k``) for the small tridiagonal matrix.

    Args:
        matvec: ``v [D] -> A v [D]`` for a symmetric A.
        start: ``[D]`` start vector (e.g. the last step's eigenvector).
        tol: Relative change of the estimate at which to stop.
        max_iter: At most this many products.

    """
    basis = [start / start.norm()]
    previous = 0.0
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(1, max_iter + 1):
        w = matvec(basis[-1])
        alphas.append(float(basis[-1] @ w))
        stacked = torch.stack(basis)
        for _ in range(2):  # twice keeps the basis orthogonal to working precision
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        values, vectors = _tridiagonal_eigen(alphas, betas)
        theta, y = float(values[-1]), vectors[:, -1]
        residual = abs(beta * float(y[-1]))
        converged = (k > 1 and abs(theta - previous) <= tol * abs(theta)) or (
            beta <= _BREAKDOWN * abs(theta)
        )
        previous = theta
        if converged or k == max_iter:
            ritz = stacked.T @ torch.as_tensor(y, dtype=w.dtype, device=w.device)
            return TopEigen(theta, ritz / ritz.norm(), k, converged, residual)
        betas.append(beta)
        basis.append(w / beta)
    raise ConfigurationError(f"lanczos needs max_iter >= 1, got {max_iter}.")


#: A Krylov space that closes (``beta`` this small) holds an exact eigenvector.
_BREAKDOWN = 1e-12


def _tridiagonal_eigen(
    alphas: list[float], betas: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the Lanczos matrix ``tridiag(betas, alphas, betas)``."""
    matrix = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return np.linalg.eigh(matrix)


def power_iteration(
    matvec: MatVec, start: Tensor, tol: float, max_iter: int
) -> TopEigen:
    """Eigenvalue of largest magnitude by power iteration (as in PyHessian).

    ``x <- A x / ||A x||``, ``value = x^T A x``; stops when the value changes by at
    most ``tol * |value|``. Converges with the ratio of the two largest magnitudes,
    so slowly when they are close, and to a negative eigenvalue if it dominates.

    Args:
        matvec: ``v [D] -> A v [D]`` for a symmetric A.
        start: ``[D]`` start vector.
        tol: Relative change of the value at which to stop.
        max_iter: At most this many products.

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
        residual = float((ax - value * x).norm())
        converged = k > 1 and abs(value - previous) <= tol * abs(value)
        previous = value
        if converged or k == max_iter:
            return TopEigen(value, x, k, converged, residual)
        x = ax / ax.norm()
    raise AssertionError("unreachable")


__all__ = ["TopEigen", "lanczos", "power_iteration"]
