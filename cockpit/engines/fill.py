"""Fill the states the due quantities declared, from what the engines gathered.

The tracked step asks the engines for the union of the due quantities' needs
(:func:`sample_request`, derived from the declared states), then turns their results
into named states (:func:`backward_states`, :func:`step_states`; names and
reductions in :mod:`cockpit.states`). Only the declared states are filled.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import Tensor, nn

from cockpit._flat_buffers import listed
from cockpit.engines import ggn_gram
from cockpit.engines._linear_factors import project_layers
from cockpit.engines._sample_request import GroupLayout, field_views, stacked_field
from cockpit.engines.curvature import Curvature
from cockpit.engines.layer_stats import LayerStats, SampleRequest
from cockpit.quantities import Quantity
from cockpit.states import (
    SPECS,
    HistSample,
    Reduce,
    StepTaken,
    layer_moments,
    projected_moments,
    rows_moments,
)
from cockpit.stats.moments import moments

__all__ = ["backward_states", "sample_request", "step_states"]

#: Per-layer states read straight off :class:`LayerStats`.
_LAYER_FIELDS = {
    "sample_grads": "grad",
    "sq_norms": "sq_norms",
    "dots": "dots",
    "sum_sq": "sum_sq",
    "low": "low",
    "high": "high",
    "projections": "projection",
}


def declared(active: Collection[Quantity]) -> set[str]:
    """Every state some due quantity reads, before or after ``optimizer.step()``."""
    return {name for q in active for name in q.states | q.step_states}


def sample_request(
    active: Collection[Quantity],
    step: int,
    params: dict[str, nn.Parameter],
    mean_reduction: bool,
    hist_samples: int,
    generator: Callable[[torch.device], torch.Generator],
) -> SampleRequest | None:
    """What the per-sample engines must gather at ``step``, or ``None`` if nothing."""
    if not any(q.needs_per_sample for q in active):
        return None
    names = declared(active)
    request = SampleRequest(
        mean_reduction=mean_reduction,
        sum_sq="sum_sq" in names,
        hist_budget=hist_samples if "hist" in names else None,
        with_param_values=any({"hist", "params"} <= q.states for q in active),
        total_params=sum([p.numel() for p in params.values()]),
        keep_for_projection=any(q.keeps_for_step(step) for q in active),
        generator=generator,
    )
    for quantity in active:
        for name, direction in quantity.directions(step).items():
            request.directions[id(params[name])] = direction
    return request


def backward_states(
    names: set[str],
    *,
    losses: Tensor,
    grads: dict[str, Tensor],
    layers: dict[str, LayerStats],
    curvature: Curvature,
    replicated: dict[str, Any],
) -> dict[str, Any]:
    """The states ``names`` once the backward pass has run.

    Args:
        names: The states to fill.
        losses: ``[N]`` per-sample losses (summarized: ``count`` and moments).
        grads: Parameter name -> flat gradient of the mean loss.
        layers: Parameter name -> per-sample statistics (if gathered).
        curvature: The second-order results (if gathered).
        replicated: The states every piece holds alike (``params``, ``initial``,
            ``lr``, ``mean_reduction``).

    """
    states: dict[str, Any] = {"count": losses.shape[0], "losses": moments(losses)}
    if "grads" in names:  # a D-sized state: a split step reduces only what is read
        states["grads"] = grads
    layout = GroupLayout.of(layers) if layers else None  # found once for every field
    for name, field in _LAYER_FIELDS.items():
        if name not in names:
            continue
        if SPECS[name].reduce is not Reduce.MOMENTS:
            states[name] = field_views(layers, field, layout)
            continue
        rows = stacked_field(layers, field, layout) if layers else None
        if rows is not None:  # every layer has it: no stack or split per layer
            states[name] = rows_moments(list(layers), rows, losses.shape[0])
        else:
            per_layer = {n: getattr(s, field) for n, s in layers.items()}
            states[name] = layer_moments(per_layer, losses.shape[0])
    if "hist" in names:
        # From the groups' stacks: one unbind per stack, no call per layer.
        values = listed(field_views(layers, "hist_values", layout))
        # Every layer holds parameter values or none does (with_param_values).
        first = next(iter(layers.values()), None)
        params: list[Tensor | None] = [None] * len(layers)
        if first is not None and first.hist_params is not None:
            params = list(listed(field_views(layers, "hist_params", layout)))
        states["hist"] = {
            n: [HistSample(v, p, s.hist_weight)]
            for (n, s), v, p in zip(layers.items(), values, params, strict=True)
        }
    states.update({k: v for k, v in replicated.items() if k in names})
    if "diagonals" in names:
        states["diagonals"] = curvature.diagonals
    if "estimates" in names:
        states["estimates"] = curvature.estimates
    if "kronecker" in names:
        states["kronecker"] = curvature.kronecker
    if "gram" in names and curvature.gram:
        states["gram"] = ggn_gram.total(curvature.gram)
    return states


def step_states(
    names: set[str],
    taken: StepTaken,
    groups: list[tuple[dict[str, LayerStats], int]],
) -> dict[str, Any]:
    """The states ``names`` once ``optimizer.step()`` has taken ``taken``.

    ``groups``: per piece of the step, its per-sample statistics and sample count
    (one group for a step in one piece).
    """
    states: dict[str, Any] = {"step": taken}
    if "unit_step" in names or "step_slopes" in names:
        tau = taken.length
        divisor = tau.clamp(min=torch.finfo(tau.dtype).tiny)
        states["unit_step"] = taken.divided(divisor)
        if "step_slopes" in names:
            states["step_slopes"] = projected_moments(
                groups, states["unit_step"], project=project_layers
            )
    return states
