"""Reducible states: the named per-step statistics quantities are computed from.

A tracked step's engines (BackPACK, torch.func, the eigensolvers) fill *states*:
named tensors such as the moments of the per-sample squared gradient norms
``sq_norms`` per parameter. A quantity declares the states it needs (``Quantity.states``) and turns
them into log values with a pure ``finalize(states)``; it never sees an engine.

Each state has a reduction that says how the states of several pieces of one
optimizer step (micro-batches, ranks) combine into the states of the whole step:

======  ==========================================================================
SUM     element-wise sum (each piece holds its share of a mean over all samples)
MAX     element-wise maximum
MIN     element-wise minimum
MOMENTS per-sample values summarized as ``(count, mean, M2)`` ``[3]`` in float64
        (:mod:`cockpit.stats.moments`), merged by Chan et al.'s parallel formula
CAT     concatenation within one process (histogram samples; never sent)
SAME    replicated: every piece holds the same value (parameters, learning rate)
WHOLE   needs the whole batch in one process (Gram matrices, eigensolver results);
        a split step cannot reduce it
======  ==========================================================================

:func:`reduce_states` is that one call over the pieces' states; a reduction across
processes maps the same table onto collectives (``all_reduce`` for SUM/MAX/MIN,
``all_gather`` of the ``[3]`` summaries for MOMENTS, histogram counts on agreed
edges for CAT: :mod:`cockpit._distributed`). ``dots`` are defined against the whole
step's gradient, so a piece fills them once that gradient is known.

A per-layer per-sample state (``sq_norms``, ``dots``, ``projections``,
``step_slopes``) holds the moments of each layer's values and of the whole network's
per-sample value (the sum over layers of sample n's values, formed per sample *before*
summarizing: the moments of a sum are not the sums of the moments), as
:func:`layer_moments` builds them. The sample count N is the SUM state ``count``, a
host integer, never inferred from a vector's length.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cockpit import _flat_buffers
from cockpit._layer_rows import LayerRows
from cockpit.exceptions import UsageError
from cockpit.stats.moments import merge, moments

__all__ = [
    "SPECS",
    "HistSample",
    "Reduce",
    "StateSpec",
    "StepTaken",
    "layer_moments",
    "projected_moments",
    "reduce_states",
    "rows_moments",
]


class Reduce(enum.Enum):
    """How the states of the pieces of one step combine (see the module docstring)."""

    SUM = "sum"
    MOMENTS = "moments"
    MAX = "max"
    MIN = "min"
    CAT = "cat"
    SAME = "same"
    WHOLE = "whole"


@dataclass(frozen=True)
class StateSpec:
    """One state: its reduction, whether it holds a value per parameter, its phase.

    Attributes:
        reduce: How pieces combine.
        per_layer: The state maps parameter names to values.
        after_step: Known only once ``optimizer.step()`` has run.
        doc: What it holds, with shapes (N samples, ``D_l`` entries of parameter l).

    """

    reduce: Reduce
    per_layer: bool
    after_step: bool
    doc: str


@dataclass(frozen=True)
class HistSample:
    """A uniform sample of one parameter's per-sample gradient elements.

    Attributes:
        values: ``[K]`` sampled elements ``g_{n,j}``.
        params: ``[K]`` the parameter values at the same positions (or ``None``).
        weight: How many elements each sampled one stands for (``N D_l / K``).

    """

    values: Tensor
    params: Tensor | None
    weight: float


def _spec(reduce: Reduce, per_layer: bool, doc: str, after_step: bool = False):
    return StateSpec(reduce, per_layer, after_step, doc)


_R = Reduce

#: Every state an engine can fill, by name.
SPECS: dict[str, StateSpec] = {
    "count": _spec(_R.SUM, False, "N, the number of samples (a host integer)"),
    "losses": _spec(_R.MOMENTS, False, "[3] moments of the per-sample losses l_n"),
    "grads": _spec(_R.SUM, True, "[D_l] gradient of the mean loss, from .grad"),
    "sample_grads": _spec(
        _R.SUM, True, "[D_l] mean of the per-sample gradients, from the engine"
    ),
    "sq_norms": _spec(_R.MOMENTS, True, "[3] moments of ||g_n||^2"),
    "dots": _spec(_R.MOMENTS, True, "[3] moments of g_n . g (g of the whole step)"),
    "sum_sq": _spec(_R.SUM, True, "[D_l] sum_n g_{n,j}^2"),
    "low": _spec(_R.MIN, True, "[] smallest per-sample gradient element"),
    "high": _spec(_R.MAX, True, "[] largest per-sample gradient element"),
    "hist": _spec(_R.CAT, True, "list of HistSample of per-sample elements"),
    "counted": _spec(
        _R.SUM,
        False,
        "quantity -> its histogram counts on the agreed edges, summed over ranks",
    ),
    "projections": _spec(
        _R.MOMENTS,
        True,
        "[3] moments of g_n . v along the directions the quantity asked for",
    ),
    "input_moments": _spec(
        _R.SUM,
        False,
        "[3] count, sum and sum of squares of the model input's elements (float64)",
    ),
    "input_absmax": _spec(_R.MAX, False, "[] largest |element| of the model input"),
    "params": _spec(_R.SAME, True, "the parameter values"),
    "shard_norms": _spec(
        _R.SAME,
        False,
        "key -> [L + 1] norms of a per-layer state held in shards (FSDP: 'grads', "
        "'params', 'moved' = params - initial), the network's last, from the ranks' "
        "summed squares of their shards",
    ),
    "initial": _spec(_R.SAME, True, "the parameter values when tracking started"),
    "lr": _spec(_R.SAME, False, "plain SGD's learning rate, or None"),
    "mean_reduction": _spec(_R.SAME, False, "the user's loss averages over samples"),
    "diagonals": _spec(
        _R.SUM, False, "source -> parameter -> [D_l] curvature diagonal (BackPACK's)"
    ),
    "estimates": _spec(_R.WHOLE, False, "source -> Hutchinson probes and std error"),
    "kronecker": _spec(_R.WHOLE, False, "kind -> parameter -> Kronecker factors"),
    "gram": _spec(_R.WHOLE, False, "the GGN factor's Gram and cross matrices"),
    "eigen": _spec(_R.WHOLE, False, "quantity -> eigensolver result"),
    "step": _spec(_R.SAME, False, "the step the optimizer took", after_step=True),
    "unit_step": _spec(
        _R.SAME, True, "[D_l] the step taken divided by its length", after_step=True
    ),
    "step_shard_norms": _spec(
        _R.SAME,
        False,
        "[L + 1] norms of the step taken, from the ranks' shards, as shard_norms",
        after_step=True,
    ),
    "step_slopes": _spec(
        _R.MOMENTS,
        True,
        "[3] moments of g_n . unit_step (slopes along the step)",
        after_step=True,
    ),
}


def _reduce_values(reduce: Reduce, values: list[Any], name: str) -> Any:
    if reduce is Reduce.SAME or values[0] is None:  # None: a layer without it
        return values[0]
    if reduce is Reduce.WHOLE:
        raise UsageError(
            f"State '{name}' needs the whole batch in one process, but this step came "
            f"in {len(values)} pieces. Track the quantities that need it on steps "
            "that are not split."
        )
    if isinstance(values[0], Mapping):
        return {
            key: _reduce_values(reduce, [v[key] for v in values], name)
            for key in values[0]
        }
    if reduce is Reduce.CAT:
        return [item for value in values for item in value]
    if isinstance(values[0], int):
        return sum(values)
    stacked = torch.stack(values)
    if reduce is Reduce.MOMENTS:
        return merge(stacked)
    if reduce is Reduce.SUM:
        return stacked.sum(0)
    return stacked.amax(0) if reduce is Reduce.MAX else stacked.amin(0)


def reduce_states(pieces: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine the states of the pieces of one step into the step's states.

    Args:
        pieces: Per piece, state name -> value (per-layer states: parameter name ->
            value), each piece holding the same names.

    Returns:
        State name -> the reduced value, by each state's :class:`Reduce`.

    Raises:
        UsageError: If a WHOLE state comes in more than one piece.

    """
    if len(pieces) == 1:
        return dict(pieces[0])
    return {
        name: _reduce_values(SPECS[name].reduce, [p[name] for p in pieces], name)
        for name in pieces[0]
    }


def layer_moments(
    per_layer: Mapping[str, Tensor | None], population: int | None = None
) -> dict[str, Any] | None:
    """A per-layer per-sample state: the moments of each layer's and the network's.

    Args:
        per_layer: Parameter name -> ``[M]`` per-sample values (``None``: a layer
            without them, left out), the same samples for every layer.
        population: N, if the M samples are a uniform subsample of N
            (:func:`cockpit.stats.moments.moments`).

    Returns:
        ``{"layers": name -> [3], "network": [3]}``, the network's per-sample value
        being the sum over layers of the sample's values; ``None`` if no layer has
        values.

    """
    if isinstance(per_layer, LayerRows):  # already stacked (project_layers)
        return rows_moments(per_layer.names, per_layer.rows, population)
    names = [name for name, values in per_layer.items() if values is not None]
    if not names:
        return None
    return rows_moments(
        names, torch.stack([per_layer[name] for name in names]), population
    )


def rows_moments(
    names: list[str], rows: Tensor, population: int | None = None
) -> dict[str, Any]:
    """:func:`layer_moments` of per-sample values already stacked, ``[L, M]``."""
    summary = moments(torch.cat([rows, rows.sum(0, keepdim=True)]), population)
    return {
        "layers": LayerRows(names, summary[:-1]),
        "network": summary[-1],
    }


def _project_each(
    layers: Mapping[str, Any], directions: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """``g_n . v_l`` layer by layer: ``[M]`` per parameter name."""
    return {k: layers[k].project(v) for k, v in directions.items()}


def projected_moments(
    groups: Sequence[tuple[Mapping[str, Any], int]],
    directions: Mapping[str, Tensor],
    project: Callable[
        [Mapping[str, Any], Mapping[str, Tensor]], dict[str, Tensor]
    ] = _project_each,
) -> dict[str, Any] | None:
    """Moments of ``g_n . v_l`` per layer and network over groups of samples.

    Args:
        groups: Per piece of the step, parameter name -> its per-sample statistics
            (``LayerStats``, whose ``project`` gives ``[M_k]`` values), and the
            piece's number of samples ``n_k`` (a subsample stands for them).
        directions: Parameter name -> ``v_l`` ``[D_l]``.
        project: ``(layers, directions) -> name -> [M_k]``; the engines pass one
            that projects a group of equal layers in one product.

    Returns:
        The pieces' :func:`layer_moments`, merged.

    """
    parts = [layer_moments(project(layers, directions), n) for layers, n in groups]
    if len(parts) == 1:
        return parts[0]
    return _reduce_values(Reduce.MOMENTS, parts, "projections")


class StepTaken:
    """The step the optimizer took: ``s = theta_{t+1} - theta_t`` per parameter.

    Args:
        delta: Parameter name -> flat ``s_l`` ``[D_l]``.

    Attributes:
        names: The parameters' names, in the order of ``delta`` and the norms.

    """

    def __init__(self, delta: dict[str, Tensor]):
        self.delta = delta
        self.names = list(delta)

    @functools.cached_property
    def norm_rows(self) -> Tensor:
        """``[L]``: ``||s_l||`` per parameter, in the order of ``names``.

        From flat buffers where ``delta`` holds views into them, otherwise one
        fused call (:func:`cockpit._flat_buffers.norm_rows`).
        """
        return _flat_buffers.norm_rows(self.delta)

    @functools.cached_property
    def length(self) -> Tensor:
        """``tau = ||s||``: the norm of the per-parameter norms ``[L]``.

        The same expression, so the same bits, as the total of ``update_size``
        (:func:`cockpit.quantities._view.with_total`): one reduction of ``L``
        numbers, never one per parameter.
        """
        return torch.linalg.vector_norm(self.norm_rows)

    def divided(self, divisor: Tensor) -> dict[str, Tensor]:
        """``s_l / divisor`` per parameter (``divisor`` a 0-d tensor)."""
        return dict(
            zip(
                self.delta,
                torch._foreach_div(list(self.delta.values()), divisor),
                strict=True,
            )
        )
