"""Curvature formulas: Hessian trace, TIC, and Kronecker-factored blocks.

Conventions (QUANTITIES.md): the batch loss is the mean ``L = (1/N) sum_n l_n``;
curvature diagonals ``h [D]`` are of ``L`` (a diagonal of a sum-reduced loss is
divided by N first), and ``M_j = (1/N) sum_n g_{n,j}^2`` is the diagonal of the
uncentered second moment of the per-sample gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from cockpit._record import Flagged
from cockpit.stats import moments

#: TIC's default damping of the curvature in the denominator (QUANTITIES.md).
TIC_EPS = 1e-7


def tic_diag(sum_sq: Tensor, diagonal: Tensor, n: int, eps: float = TIC_EPS) -> Tensor:
    """TIC with diagonal curvature (Thomas et al. 2020): ``sum_j M_j / (h_j + eps)``.

    Args:
        sum_sq: ``[D]``, ``sum_n g_{n,j}^2`` of the per-sample gradients.
        diagonal: ``[D]``, the curvature diagonal ``h`` of the mean loss.
        n: Batch size N (``M = sum_sq / N``).
        eps: Added to each ``h_j``.

    Returns:
        ``[]``.

    """
    return (sum_sq / n / (diagonal + eps)).sum()


def tic_trace(sq_norms: Tensor, trace: Tensor, eps: float = TIC_EPS) -> Tensor:
    """TIC with traces (Thomas et al. 2020): ``tr(M) / (tr(H) + eps)``.

    Args:
        sq_norms: ``[..., 3]``, moments of ``||g_n||^2`` (:mod:`cockpit.stats.moments`),
            so ``tr(M) = mean_n ||g_n||^2`` is their mean.
        trace: ``[...]``, ``tr(H)``: the sum of the curvature diagonal of the mean
            loss (per layer, for rows of layers).
        eps: Added to the trace.

    Returns:
        ``[...]``.

    """
    return moments.mean(sq_norms) / (trace + eps)


def kronecker_block(*eigenvalues: np.ndarray, eps: float) -> dict[str, float | Flagged]:
    """Top eigenvalue, trace and condition numbers of ``B (x) A`` (or of ``B`` alone).

    The eigenvalues of a Kronecker product are the products of its factors'
    eigenvalues, so for positive semi-definite factors
    ``lambda_max = prod_i max(eig_i)``, ``tr = prod_i tr_i`` and
    ``cond = lambda_max / prod_i min(eig_i)``; the ``D_l x D_l`` block is never formed
    (KFAC: Martens & Grosse 2015; Hessian backpropagation: Dangel et al. 2020).

    Most blocks are singular (a factor of a softmax output has the all-ones null
    direction, dead units and fewer samples than inputs leave null directions too),
    so ``cond`` is mostly infinite. ``nonzero_condition`` is the condition over the
    nonzero spectrum, ``lambda_max / lambda_min+``: the null space of ``B (x) A`` is
    spanned by the null directions of either factor, so its smallest nonzero
    eigenvalue is ``prod_i min+(eig_i)``, each factor's smallest eigenvalue above
    its round-off level ``d * eps * max(eig_i)`` (``numpy.linalg.matrix_rank``'s).

    Args:
        *eigenvalues: Each factor's eigenvalues, ascending (``numpy.linalg.eigvalsh``).
        eps: Machine epsilon of the factors' dtype: a factor of size d whose smallest
            eigenvalue is at most ``d * eps * lambda_max`` is singular up to round-off.

    Returns:
        ``{"max_eigenvalue", "trace", "condition", "nonzero_condition"}``; a singular
        block (a singular factor, e.g. fewer samples than inputs, or softmax's
        all-ones direction) has no finite condition number and gets a
        :class:`Flagged` one; a zero block has no nonzero spectrum either, and gets
        :data:`ZERO_BLOCK` for ``nonzero_condition``.

    """
    top = float(np.prod([e[-1] for e in eigenvalues]))
    trace = float(np.prod([e.sum() for e in eigenvalues]))
    if top <= 0 or any(e[-1] <= 0 for e in eigenvalues):
        return {
            "max_eigenvalue": top,
            "trace": trace,
            "condition": SINGULAR,
            "nonzero_condition": ZERO_BLOCK,
        }
    floors = [len(e) * eps * e[-1] for e in eigenvalues]
    nonzero = float(
        np.prod([e[e > floor][0] for e, floor in zip(eigenvalues, floors, strict=True)])
    )
    singular = any(e[0] <= floor for e, floor in zip(eigenvalues, floors, strict=True))
    low = float(np.prod([e[0] for e in eigenvalues]))
    return {
        "max_eigenvalue": top,
        "trace": trace,
        "condition": SINGULAR if singular else top / low,
        "nonzero_condition": top / nonzero,
    }


def factor_eigenvalues(factors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each symmetric factor's eigenvalues, ascending; equal factors decomposed once.

    A layer's weight and bias share the output factor ``B`` (BackPACK forms it twice,
    as equal matrices), so of 3c3d's 18 factors 6 are repeats; an equal matrix has
    the same eigenvalues, so each repeat reuses them (comparing costs ``O(d^2)``,
    the decomposition ``O(d^3)``).

    Args:
        factors: ``[d_i, d_i]`` symmetric matrices.

    Returns:
        ``[d_i]`` eigenvalues per factor (``numpy.linalg.eigvalsh``).

    """
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    out = []
    for factor in factors:
        same = (
            values
            for earlier, values in seen
            if earlier.shape == factor.shape and np.array_equal(earlier, factor)
        )
        values = next(same, None)
        if values is None:
            values = np.linalg.eigvalsh(factor)
            seen.append((factor, values))
        out.append(values)
    return out


SINGULAR = Flagged(
    "singular block: a factor's smallest eigenvalue is zero up to round-off (e.g. "
    "fewer samples than inputs, or the softmax's all-ones direction), so the "
    "condition number is infinite"
)


ZERO_BLOCK = Flagged(
    "zero block: every eigenvalue is zero (e.g. a layer no gradient reaches), so "
    "there is no condition number"
)


__all__ = [
    "SINGULAR",
    "TIC_EPS",
    "ZERO_BLOCK",
    "factor_eigenvalues",
    "kronecker_block",
    "tic_diag",
    "tic_trace",
]
