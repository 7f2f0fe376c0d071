"""Gradient tests for the batch size: norm, inner-product and orthogonality tests.

Every function takes leading batch dimensions (``[..., N]`` per-sample values with
``[...]`` squared norms), so the tests of all layers are one call on their stacked
per-sample values.
"""

from __future__ import annotations

from torch import Tensor


def centered_sq_norm_sum(sq_norms: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """``sum_n ||g_n - g||^2 = sum_n ||g_n||^2 - N ||g||^2``, clamped at 0.

    Args:
        sq_norms: ``[..., N]``, ``||g_n||^2``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``, the summed squared distance of the per-sample gradients to their
        mean.

    """
    n = sq_norms.shape[-1]
    return (sq_norms.sum(-1) - n * grad_sq_norm).clamp(min=0)


def norm_test(sq_norms: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Smallest theta for which the norm test passes (Byrd et al. 2012, eq. 3.9).

    ``sqrt( (1/(N-1)) sum_n ||g_n - g||^2 / N ) / ||g||``.

    Args:
        sq_norms: ``[..., N]``, ``||g_n||^2`` of the per-sample gradients.
        grad_sq_norm: ``[...]``, ``||g||^2`` of the mini-batch gradient.

    Returns:
        ``[...]``; below 1 means the batch is large enough for the test.

    """
    n = sq_norms.shape[-1]
    variance = centered_sq_norm_sum(sq_norms, grad_sq_norm) / (n - 1)
    return (variance / n).sqrt() / grad_sq_norm.sqrt()


def inner_product_test(dots: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Inner-product test (Bollapragada, Byrd, Nocedal 2018, eq. 2.6).

    ``sqrt( Var_n(g_n . g) / N ) / ||g||^2`` with the unbiased sample variance.

    Args:
        dots: ``[..., N]``, projections ``g_n . g``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``.

    """
    n = dots.shape[-1]
    return (dots.var(dim=-1, correction=1) / n).sqrt() / grad_sq_norm


def orthogonality_test(sq_norms: Tensor, dots: Tensor, grad_sq_norm: Tensor) -> Tensor:
    """Orthogonality test (Bollapragada et al. 2018, eq. 3.3).

    ``sqrt( (1/(N-1)) sum_n ||g_n - (g_n . g / ||g||^2) g||^2 / N ) / ||g||``, where
    ``||g_n - (g_n . g / ||g||^2) g||^2 = ||g_n||^2 - (g_n . g)^2 / ||g||^2``.

    Args:
        sq_norms: ``[..., N]``, ``||g_n||^2``.
        dots: ``[..., N]``, ``g_n . g``.
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``[...]``.

    """
    n = sq_norms.shape[-1]
    ratio = dots**2 / grad_sq_norm.unsqueeze(-1)
    orthogonal = (sq_norms - ratio).clamp(min=0).sum(-1)
    return (orthogonal / (n - 1) / n).sqrt() / grad_sq_norm.sqrt()
