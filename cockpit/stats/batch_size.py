"""Batch-size suggestions: the gradient noise scale and CABS."""

from __future__ import annotations

from torch import Tensor

from cockpit.stats.gradient_tests import centered_sq_norm_sum


def gradient_noise_scale(
    sq_norms: Tensor, grad_sq_norm: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Simple noise scale ``B_simple = tr(S) / G2`` (McCandlish et al. 2018, sec. 2.2).

    ``tr(S) = (1/(N-1)) sum_n ||g_n - g||^2`` is the trace of the per-sample gradient
    covariance and ``G2 = ||g||^2 - tr(S)/N`` the unbiased estimate of the true
    gradient's squared norm. ``G2 <= 0`` gives a non-finite or negative ratio; the
    caller logs it as non-finite with that reason.

    Args:
        sq_norms: ``[..., 3]``, moments of ``||g_n||^2`` (leading dimensions: several
            layers; :mod:`cockpit.stats.moments`).
        grad_sq_norm: ``[...]``, ``||g||^2``.

    Returns:
        ``(B_simple, tr(S), G2)``, each ``[...]``.

    """
    n = sq_norms[..., 0]
    trace_cov = centered_sq_norm_sum(sq_norms, grad_sq_norm) / (n - 1)
    true_sq_norm = grad_sq_norm - trace_cov / n
    return trace_cov / true_sq_norm, trace_cov, true_sq_norm


def cabs(lr: float, sq_norms: Tensor, grad_sq_norm: Tensor, loss: Tensor) -> Tensor:
    """Batch size suggested by CABS (Balles, Romero, Hennig 2017, eq. 22).

    ``lr * (1/N) sum_n ||g_n - g||^2 / L``, for plain SGD only.

    Args:
        lr: The SGD learning rate.
        sq_norms: ``[3]``, moments of ``||g_n||^2``.
        grad_sq_norm: ``[]``, ``||g||^2``.
        loss: ``[]``, the mini-batch loss L.

    Returns:
        ``[]``.

    """
    n = sq_norms[..., 0]
    return lr * centered_sq_norm_sum(sq_norms, grad_sq_norm) / n / loss
