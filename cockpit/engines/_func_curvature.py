"""The torch.func engine's curvature results, Hutchinson's estimator and Gram matrices.

The exact Hessian's diagonal has no factor like the GGN's columns: Hutchinson's
estimator ``diag(H) ~ (1/S) sum_s v_s * H v_s`` with Rademacher probes ``v_s`` on
Hessian-vector products of the replayed batch loss; its trace's standard error is
``std_s(v_s^T H v_s) / sqrt(S)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cockpit.engines.ggn_gram import GramPart
from cockpit.engines.hessian import hvp_operator

__all__ = ["Estimate", "FuncCurvature", "gram_parts", "hutchinson"]


@dataclass
class Estimate:
    """How a stochastic curvature estimate was made.

    Attributes:
        probes: Number of Hutchinson probes S.
        std_error: ``[]``, standard error of the trace of the mean loss's Hessian.

    """

    probes: int
    std_error: Tensor


@dataclass
class FuncCurvature:
    """What the engine computed for the due curvature quantities (batch-loss scale).

    Attributes:
        diagonals: Source -> parameter name -> ``[*shape]`` curvature diagonal of the
            batch loss (mean or sum reduction, like BackPACK's).
        estimates: Source -> :class:`Estimate`, for stochastic sources.
        columns: Parameter name -> ``[n, 1 + M, D_l]``: each used sample's gradient
            followed by its GGN factor columns (per-sample scaling).

    """

    diagonals: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    columns: dict[str, Tensor] = field(default_factory=dict)


def hutchinson(
    gradient: Sequence[Tensor],
    named: dict[str, Tensor],
    probes: int,
    generator: torch.Generator,
    mean_scale: float,
) -> tuple[dict[str, Tensor], Estimate]:
    """Hutchinson's estimate of the Hessian diagonal of the batch loss.

    Args:
        gradient: The replayed batch loss's gradient with graph, one tensor per
            parameter of ``named`` (shared with ``hess_max_ev`` of the same step).
        named: Every tracked parameter, by name.
        probes: Number of Rademacher probes S (at least 2).
        generator: Draws the probes.
        mean_scale: Factor from the batch loss's Hessian to the mean loss's (for the
            trace's standard error).

    Returns:
        Parameter name -> ``[*shape]`` diagonal, and how it was estimated.

    """
    params = list(named.values())
    hvp = hvp_operator(gradient, params, 1.0)  # Hessian of the batch loss
    size = sum(p.numel() for p in params)
    first = params[0]
    diagonal = first.new_zeros(size)
    traces = []
    for _ in range(probes):
        probe = torch.randint(2, (size,), generator=generator, device=first.device).to(
            first.dtype
        )
        probe = probe * 2 - 1
        product = probe * hvp(probe)
        diagonal += product
        traces.append(product.sum())
    diagonal /= probes
    per_param = dict(
        zip(named, diagonal.split([p.numel() for p in params]), strict=True)
    )
    shaped = {name: per_param[name].view_as(p).detach() for name, p in named.items()}
    spread = torch.stack(traces).detach() * mean_scale
    std_error = spread.std(correction=1) / probes**0.5  # probes >= 2
    return shaped, Estimate(probes=probes, std_error=std_error)


def gram_parts(
    columns: dict[str, Tensor], n_batch: int, mean: bool
) -> dict[str, GramPart]:
    """Per parameter, the Gram matrices of :mod:`cockpit.engines.ggn_gram`.

    Args:
        columns: Parameter name -> ``[n, 1 + M, D_l]`` from
            :meth:`~cockpit.engines.func_engine.FuncEngine.curvature`: gradient, then factor columns, per sample.
        n_batch: N, the whole batch (BackPACK's scaling uses it).
        mean: The loss averages over samples.

    Returns:
        Parameter name -> ``GramPart`` in BackPACK's scaling (``V / sqrt(N)`` and
        gradients ``/ N`` for a mean-reduced loss), index ``m n + i`` for column m
        of sample i.

    """
    parts = {}
    for name, block in columns.items():
        grads = block[:, 0]
        factor = block[:, 1:].transpose(0, 1).flatten(0, 1)
        if mean:
            grads, factor = grads / n_batch, factor / math.sqrt(n_batch)
        parts[name] = GramPart(gram=factor @ factor.T, cross=grads @ factor.T)
    return parts
