"""Gradient tests for the batch size: norm, inner-product and orthogonality tests.

Every function takes the mergeable moments ``(n, mean, M2)`` ``[..., 3]`` of the
per-sample values (:mod:`cockpit.stats.moments`) with leading dimensions (``[...]``
squared norms), so the tests of all layers are one call on their stacked moments, and
the same call serves a batch split over micro-batches or ranks.
"""

from __future__ import annotations

from torch import Tensor

from cockpit.stats.moments import sum_of_squares, total, variance


def centered_sq_norm_sum(sq_norms: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """``sum_n ||g_n - g||^2 = sum_n ||g_n||^2 - N ||g||^2``, clamped at 0.

    Args:
        sq_norms: ``[..., 3]``, moments of ``||g_n||^2``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``, the summed squared distance of the per-sample gradients to their
        mean.

    """
    n = sq_norms[..., 0]
    return (total(sq_norms) - n * grad_sq_norm).clamp(min=0)


def norm_test(sq_norms: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Smallest theta for which the norm test passes (Byrd et al. 2012, eq. 3.9).

    ``sqrt( (1/(N-1)) sum_n ||g_n - g||^2 / N ) / ||g||``.

    Args:
        sq_norms: ``[..., 3]``, moments of ``||g_n||^2`` of the per-sample gradients.
        grad_sq_norm: ``[...]``, ``||g||^2`` of the mini-batch gradient.

    Returns:
        ``[...]``; below 1 means the batch is large enough for the test.

    """
    n = sq_norms[..., 0]
    variance = centered_sq_norm_sum(sq_norms, grad_sq_norm) / (n - 1)
    return (variance / n).sqrt() / grad_sq_norm.sqrt()


def inner_product_test(dots: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Inner-product test (Bollapragada, Byrd, Nocedal 2018, eq. 2.6).

    ``sqrt( Var_n(g_n . g) / N ) / ||g||^2`` with the unbiased sample variance.

    Args:
        dots: ``[..., 3]``, moments of the projections ``g_n . g``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``.

    """
    return (variance(dots) / dots[..., 0]).sqrt() / grad_sq_norm


def orthogonality_test(sq_norms: Tensor, dots: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Orthogonality test (Bollapragada et al. 2018, eq. 3.3).

    ``sqrt( (1/(N-1)) sum_n ||g_n - (g_n . g / ||g||^2) g||^2 / N ) / ||g||``, where
    ``||g_n - (g_n . g / ||g||^2) g||^2 = ||g_n||^2 - (g_n . g)^2 / ||g||^2``, so the
    sum is ``sum_n ||g_n||^2 - sum_n (g_n . g)^2 / ||g||^2`` (each term is >= 0 by
    Cauchy-Schwarz; the sum is clamped at 0 against rounding).

    Args:
        sq_norms: ``[..., 3]``, moments of ``||g_n||^2``.
        dots: ``[..., 3]``, moments of ``g_n . g``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``.

    """
    n = sq_norms[..., 0]
    ratio = sum_of_squares(dots) / grad_sq_norm
    orthogonal = (total(sq_norms) - ratio).clamp(min=0)
    return (orthogonal / (n - 1) / n).sqrt() / grad_sq_norm.sqrt()
