"""Statistics of the parameter values themselves: no gradients needed."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def param_norms(params: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Euclidean norms of the parameters, per tensor and of the whole network.

    ``||theta_l||_2 = sqrt(sum_j theta_{l,j}^2)`` for each parameter tensor ``l``, and
    ``||theta||_2 = sqrt(sum_l ||theta_l||_2^2)``, the norm of all parameters as one
    vector, which is the norm of the vector of per-tensor norms.

    Args:
        params: Parameter name -> ``theta_l``, any shape (``D_l`` entries).

    Returns:
        ``(||theta||_2, {name: ||theta_l||_2})``, each norm ``[]``.

    """
    per_layer = {name: torch.linalg.vector_norm(p) for name, p in params.items()}
    total = torch.linalg.vector_norm(torch.stack(list(per_layer.values())))
    return total, per_layer
