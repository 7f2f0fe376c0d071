"""Statistics of ``Linear`` layers' per-sample gradients from their two factors.

For ``[N, in]`` inputs the per-sample gradient is the outer product
``g_n = delta_n x_n^T``: norms, projections and element-wise second moments are
small matrix products, and no per-sample gradient is ever formed. A bias is the
same with ``x_n = 1`` (``in = 1``).

Layers whose factors have equal shapes are reduced together
(:func:`from_linear_factor_groups`): their factors are stacked to ``[G, N, out]``
and ``[G, N, in]`` and every statistic is one batched operation for the group, so
the number of small tensor operations per step grows with the number of distinct
layer shapes, not with the depth (a 64-layer MLP of equal widths has a handful).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cockpit import _flat_buffers
from cockpit._flat_buffers import stacked_views
from cockpit._layer_rows import LayerRows
from cockpit.engines._sample_request import (
    GroupRow,
    LayerStats,
    SampleRequest,
    draw_positions,
)

__all__ = [
    "Factors",
    "from_linear_factor_groups",
    "from_linear_factors",
    "project_layers",
]


@dataclass
class Factors:
    """One ``Linear`` parameter's per-sample gradient factors, reduced later.

    Attributes:
        delta: ``[N, out]``, gradients of the per-sample losses w.r.t. the output,
            once multiplied by ``scale``.
        x: ``[N, in]``, the layer's inputs (``[N, 1]`` ones for a bias).
        param: The ``[out, in]`` weight or ``[out]`` bias.
        positions: The histogram sample's parameter positions (``None``: all, or no
            histogram), drawn when the factors arrive (:meth:`arrive`), so that the
            random stream is drawn in the order of the backward pass.
        rounding: See :class:`~cockpit.engines._sample_request.LayerStats`.
        scale: The factor ``delta`` still needs (BackPACK's output gradients carry
            the loss's ``1/N`` and the user's loss scale): one per step, shared by
            every layer, so it multiplies a group's stack once.

    """

    delta: Tensor
    x: Tensor
    param: Tensor
    positions: Tensor | None = None
    rounding: float = 0.0
    scale: int | float | Tensor = 1

    @classmethod
    def arrive(
        cls,
        delta: Tensor,
        x: Tensor,
        param: Tensor,
        request: SampleRequest,
        rounding: float = 0.0,
        scale: int | float | Tensor = 1,
    ) -> Factors:
        """The factors, with the histogram positions drawn now if a histogram is due.

        Not detached: the reductions run under ``no_grad``.
        """
        positions = None
        if request.hist_budget is not None:
            positions = draw_positions(
                request, delta.shape[0], param.numel(), delta.device
            )
        return cls(delta, x, param, positions, rounding, scale)


def from_linear_factors(
    delta: Tensor, x: Tensor, param: Tensor, request: SampleRequest
) -> LayerStats:
    """Statistics of ``g_n = delta_n x_n^T`` (one layer; see the group version).

    Args:
        delta: ``[N, out]``, gradients of the per-sample losses w.r.t. the output.
        x: ``[N, in]``, the layer's inputs.
        param: The ``[out, in]`` weight.
        request: What to compute.

    Returns:
        The layer's statistics.

    """
    return from_linear_factor_groups(
        [Factors.arrive(delta, x, param, request)], request
    )[0]


@torch.no_grad()
def from_linear_factor_groups(
    factors: list[Factors], request: SampleRequest
) -> list[LayerStats]:
    """Statistics of every ``g_n = delta_n x_n^T``, one batched reduction per shape.

    ``||g_n||^2 = ||delta_n||^2 ||x_n||^2``, ``g_n . V = delta_n^T V x_n``,
    ``sum_n g_n^2 = (delta^2)^T (x^2)`` (element-wise squares), each as one batched
    product over the layers of a group.

    Args:
        factors: The layers' factors.
        request: What to compute.

    Returns:
        The statistics, in the order of ``factors``.

    """
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(factors):
        # Reduced together: equal shapes, dtype, device and scale (inline: no
        # Python call per parameter tensor).
        scale = id(f.scale) if isinstance(f.scale, Tensor) else f.scale
        key = (*f.delta.shape, *f.x.shape, f.delta.dtype, f.delta.device, scale)
        groups.setdefault(key, []).append(i)
    results: list[LayerStats] = [None] * len(factors)  # type: ignore[list-item]
    for members in groups.values():
        stats = _group([factors[i] for i in members], request)
        for i, layer in zip(members, stats, strict=True):
            layer.rounding = factors[i].rounding
            results[i] = layer
    return results


def _stack(tensors: list[Tensor]) -> Tensor:
    """``[G, ...]``; a view, not a copy, for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def _group(factors: list[Factors], request: SampleRequest) -> list[GroupRow]:
    """The statistics of layers with equal factor shapes, as one batched reduction."""
    delta, x = _stack([f.delta for f in factors]), _stack([f.x for f in factors])
    if not isinstance(factors[0].scale, int) or factors[0].scale != 1:
        delta = delta * factors[0].scale
    g, n = delta.shape[:2]
    # torch.bmm, not @: the same product without matmul's expand and view steps.
    grad = torch.bmm(delta.transpose(1, 2), x).div_(n)  # [G, out, in]
    delta_sq, x_sq = delta**2, x**2
    sq_norms = delta_sq.sum(2) * x_sq.sum(2)  # [G, N]
    dots = torch.bmm(delta, grad).mul_(x).sum(2)
    # The layers' statistics are rows of the stacks, selected only where read.
    stacks = {"grad": grad.reshape(g, -1), "sq_norms": sq_norms, "dots": dots}
    unbound: dict[str, tuple[Tensor, ...]] = {}  # shared: one unbind per stack
    stats = [GroupRow(stacks, j, unbound) for j in range(g)]
    if request.sum_sq:
        stacks["sum_sq"] = torch.bmm(delta_sq.transpose(1, 2), x_sq).reshape(g, -1)
    group = _Stacked(factors, delta, x)
    _projections(stats, group, request, stacks)
    if request.hist_budget is not None:
        stacks["low"], stacks["high"] = _outer_product_extremes(delta, x)
        _histogram_sample(stats, group, request, stacks)
    return stats


@dataclass
class _Stacked:
    """A group's factors and their stacks ``delta [G, N, out]``, ``x [G, N, in]``."""

    factors: list[Factors]
    delta: Tensor
    x: Tensor

    @torch.no_grad()
    def project(self, directions: Tensor) -> Tensor:
        """``[G, N]``: ``g_n . v = delta_n^T V x_n`` for ``[G, out * in]`` directions."""
        d_out, d_in = self.delta.shape[2], self.x.shape[2]
        products = torch.bmm(self.delta, directions.view(-1, d_out, d_in))
        return products.mul_(self.x).sum(2)


@dataclass(frozen=True)
class _LayerProjector:
    """``v [out * in] -> [N]`` for one layer of a group (:func:`project_layers`)."""

    group: _Stacked
    index: int

    def __call__(self, direction: Tensor) -> Tensor:
        j, group = self.index, self.group
        layer = _Stacked(
            group.factors[j : j + 1], group.delta[j : j + 1], group.x[j : j + 1]
        )
        return layer.project(direction.unsqueeze(0))[0]


def project_layers(
    layers: dict[str, Any], directions: dict[str, Tensor]
) -> dict[str, Tensor]:
    """``g_n . v_l`` of every layer in ``directions``, each group in one product.

    Args:
        layers: Parameter name -> anything with ``project``, ``v -> [N]``.
        directions: Parameter name -> flat ``v_l``.

    Returns:
        Parameter name -> ``[N]``, in the order of ``directions``: a
        :class:`~cockpit._layer_rows.LayerRows` of the groups' ``[G, N]``
        products where every direction's layer is in a group projected whole
        (no split of the products and stack of the rows per layer).

    """
    found: dict[str, Tensor] = {}
    groups: dict[int, tuple[_Stacked, dict[int, str]]] = {}
    for name, direction in directions.items():
        project = layers[name].project
        if isinstance(project, _LayerProjector):
            group = groups.setdefault(id(project.group), (project.group, {}))
            group[1][project.index] = name
        else:
            found[name] = project(direction)
    blocks: list[tuple[list[str], Tensor]] = []  # whole groups: names, [G, N]
    for group, names in groups.values():
        if len(names) < len(group.factors):
            found.update({n: layers[n].project(directions[n]) for n in names.values()})
            continue
        ordered = [names[j] for j in range(len(names))]
        stacked = stacked_views([directions[n] for n in ordered])
        blocks.append((ordered, group.project(stacked)))
    if blocks and not found:
        return _block_rows(blocks, list(directions))
    for ordered, projected in blocks:
        found.update(zip(ordered, projected.unbind(0), strict=True))
    return {name: found[name] for name in directions}


def _block_rows(blocks: list[tuple[list[str], Tensor]], names: list[str]) -> LayerRows:
    """The blocks' rows (``[G, N]`` each, of the names given) in the order of names."""
    row: dict[str, int] = {}
    for ordered, _ in blocks:
        row.update(zip(ordered, range(len(row), len(row) + len(ordered)), strict=True))
    positions = tuple(row[name] for name in names)
    stacks = [projected for _, projected in blocks]
    order = None
    if positions != tuple(range(len(positions))):
        order = _flat_buffers.index(positions, stacks[0].device)
    return LayerRows(names, _flat_buffers.stacked_rows(stacks, order))


def _projections(
    stats: list[GroupRow],
    group: _Stacked,
    request: SampleRequest,
    stacks: dict[str, Tensor],
) -> None:
    """``g_n . v`` along the requested directions now, and the projector for later.

    Projections of the whole group go into ``stacks`` (``projection``), those of
    part of it onto its layers.
    """
    factors = group.factors
    directed = [j for j, f in enumerate(factors) if id(f.param) in request.directions]
    if directed:
        # A whole group is the usual case (alpha asks for every parameter).
        part = group
        if len(directed) < len(factors):
            part = _Stacked(factors, group.delta[directed], group.x[directed])
        v = stacked_views([request.directions[id(factors[j].param)] for j in directed])
        projected = part.project(v)
        if part is group:
            stacks["projection"] = projected
        else:
            for j, row in zip(directed, projected.unbind(0), strict=True):
                stats[j].projection = row
    if request.keep_for_projection:
        for j, layer in enumerate(stats):
            layer.project = _LayerProjector(group, j)


def _outer_product_extremes(delta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """``[G]`` min and max over n, i, j of ``delta[g, n, i] * x[g, n, j]``.

    For fixed n the extremes of an outer product are among the four products of the
    two vectors' extremes: O(N (in + out)) per layer. ``amin`` and ``amax`` rather
    than ``aminmax(dim=...)``, which on a CPU takes some ten times as long along a
    dimension (0.69 ms against 0.07 ms for ``[64, 32, 64]``, one thread).
    """
    d_ends = _ends(delta)  # [G, N, 2]
    # One input (a bias's ones): it is both extremes, no reductions over it.
    x_ends = x.expand(-1, -1, 2) if x.shape[2] == 1 else _ends(x)
    corners = (d_ends[:, :, :, None] * x_ends[:, :, None, :]).flatten(1)  # [G, 4 N]
    return corners.amin(1), corners.amax(1)


def _ends(factor: Tensor) -> Tensor:
    """``[G, N, 2]``: each sample's smallest and largest entry of ``[G, N, K]``."""
    return torch.stack((factor.amin(2), factor.amax(2)), dim=2)


def _histogram_sample(
    stats: list[GroupRow],
    group: _Stacked,
    request: SampleRequest,
    stacks: dict[str, Tensor],
) -> None:
    """All N products ``delta[n, i] x[n, j]`` at each layer's drawn positions.

    Layers of one group have the same size, so either all take every position
    (``positions`` ``None``) or all drew the same number of positions ``m``. The
    samples go into ``stacks`` (``hist_values``, ``hist_params``: ``[G, N m]``).
    """
    factors, delta, x = group.factors, group.delta, group.x
    g, n = x.shape[:2]
    # No per-layer detach or flattening: under no_grad, the stack is flattened.
    # The parameters only where a quantity reads their values (grad_hist_2d).
    params = None
    if request.with_param_values:
        params = _stack([f.param for f in factors]).reshape(g, -1)  # [G, D_l]
    if factors[0].positions is None:
        values = delta[:, :, :, None] * x[:, :, None, :]
    else:
        # Every layer of the group drew (their sizes are equal).
        positions = [f.positions for f in factors if f.positions is not None]
        values = _products_at(delta, x, positions)
        if params is not None:
            params = torch.gather(params, 1, _stack(positions))
        for layer in stats:
            layer.hist_weight = factors[0].param.numel() / values.shape[2]
    stacks["hist_values"] = values.reshape(g, -1)
    if params is not None:
        stacks["hist_params"] = params.repeat(1, n)


def _products_at(delta: Tensor, x: Tensor, positions: list[Tensor]) -> Tensor:
    """``[G, N, m]``: ``delta[g, n, p // in] * x[g, n, p % in]`` at the drawn ``p``.

    Args:
        delta: ``[G, N, out]``.
        x: ``[G, N, in]``.
        positions: Per layer, ``[m]`` flat positions in its ``[out, in]`` gradient.

    A group of one layer (each group, where the layers' shapes differ) broadcasts
    its ``[m]`` positions to the gathers' ``[1, N, m]`` index as they are, without
    a stack and an axis inserted. Gathers, not ``index_select``, which along the
    last axis is several times slower on a CPU.
    """
    drawn = positions[0] if len(positions) == 1 else torch.stack(positions)[:, None]
    g, n, d_in = x.shape
    index = (g, n, drawn.shape[-1])  # [G, 1, m] or [m] broadcast to [G, N, m]
    values = torch.gather(delta, 2, (drawn // d_in).expand(index))
    return values * torch.gather(x, 2, (drawn % d_in).expand(index))
