"""The GGN's top eigenvalues and the noise along their directions (ViViT).

Dangel, Tatzel, Hennig 2022, "ViViT: Curvature access through the generalized
Gauss-Newton's low-rank structure". With per-sample factors ``G_n = V_n V_n^T`` (``V_n``
``[D, M]``: M = C classes for the exact GGN, M Monte-Carlo samples otherwise) and
``V = [V_1, ..., V_n]`` ``[D, M n]``, the GGN of the mean loss over n samples is
``(1/n) V V^T``. Its nonzero eigenvalues are those of the ``M n x M n`` Gram matrix
``(1/n) V^T V``; an eigenvector ``u_k`` of the Gram matrix gives the GGN's eigenvector
``e_k = V u_k / sqrt(n lambda_k)``. Along ``e_k``:

- per-sample curvature ``e_k^T G_i e_k = ||(V^T V u_k)_i||^2 / (n lambda_k)``, where
  ``(.)_i`` takes sample i's M entries; its mean over samples is ``lambda_k``;
- per-sample slope ``g_i . e_k = (g_i^T V) u_k / sqrt(n lambda_k)``.

Everything here runs on the host (the writer thread) on ``M n``-sized matrices.
"""

from __future__ import annotations

import numpy as np

from cockpit._record import Flagged


def per_sample_scaling(gram: np.ndarray, cross: np.ndarray, n_batch: int, mean: bool):
    """Undo BackPACK's scaling: ``V^T V`` and ``G V`` of the per-sample factors.

    BackPACK's factor carries ``1/sqrt(N)`` and its gradients ``1/N`` for a
    mean-reduced loss over the full batch of N (also when sub-sampling).
    """
    if not mean:
        return gram, cross
    return gram * n_batch, cross * n_batch**1.5


def top_eigen(gram: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues of ``(1/n) V^T V`` and their eigenvectors.

    Args:
        gram: ``[M n, M n]``, ``V^T V`` of the per-sample factors.
        n: Samples n.
        k: How many.

    Returns:
        ``([k], [M n, k])``, eigenvalues descending.

    """
    values, vectors = np.linalg.eigh(gram / n)
    return values[::-1][:k], vectors[:, ::-1][:, :k]


def directional(
    gram: np.ndarray, cross: np.ndarray, values: np.ndarray, vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample curvatures and slopes along the eigenvectors.

    Args:
        gram: ``[M n, M n]``, ``V^T V``.
        cross: ``[n, M n]``, ``g_i^T V`` for the same n samples.
        values: ``[k]`` eigenvalues (positive).
        vectors: ``[M n, k]`` Gram eigenvectors.

    Returns:
        ``(curvatures [n, k], slopes [n, k])``; each direction's sign is chosen so
        that the mean slope is >= 0 (``e_k`` points uphill).

    """
    n = cross.shape[0]
    scale = np.sqrt(n * values)
    responses = (gram @ vectors).reshape(-1, n, len(values))  # [M, n, k]
    curvatures = (responses**2).sum(0) / scale**2
    slopes = cross @ vectors / scale
    return curvatures, slopes * np.where(slopes.mean(0) < 0, -1.0, 1.0)


def snr(samples: np.ndarray) -> np.ndarray:
    """Signal-to-noise ratio per column: ``mean^2 / var`` (unbiased variance).

    A column without variance gives ``inf`` (or ``nan`` for a zero mean).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return samples.mean(0) ** 2 / samples.var(0, ddof=1)


def noise_summary(
    gram: np.ndarray, cross: np.ndarray, n: int, k: int, rtol: float
) -> dict[str, dict[str, float | Flagged]]:
    """``curvature_noise``'s value: mean and SNR of curvatures and slopes per direction.

    Directions whose eigenvalue is zero up to ``rtol * lambda_1`` (the GGN has lower
    rank than k) or a batch of one sample (no variance) get :class:`Flagged` entries.
    """
    values, vectors = top_eigen(gram, n, k)
    keys = [str(i + 1) for i in range(len(values))]
    valid = values > rtol * max(values[0], 0.0)
    safe = np.where(valid, values, 1.0)
    curvatures, slopes = directional(gram, cross, safe, vectors)
    out: dict[str, dict[str, float | Flagged]] = {}
    for name, samples in (("curvature", curvatures), ("slope", slopes)):
        ratios = snr(samples) if n > 1 else np.full(len(values), np.nan)
        for stat, column in (("mean", samples.mean(0)), ("snr", ratios)):
            out[f"{name}_{stat}"] = {
                key: _flag(column[i], valid[i], n) for i, key in enumerate(keys)
            }
    return out


def _flag(value: float, valid: bool, n: int) -> float | Flagged:
    if not valid:
        return Flagged("the GGN's eigenvalue in this direction is zero (rank < k)")
    if not np.isfinite(value):
        reason = "one sample has no variance" if n < 2 else "zero variance"
        return Flagged(f"no signal-to-noise ratio: {reason}")
    return float(value)


__all__ = [
    "directional",
    "noise_summary",
    "per_sample_scaling",
    "snr",
    "top_eigen",
]
