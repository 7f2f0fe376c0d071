"""Statistics of ``Linear`` layers' per-sample gradients from their two factors.

For ``[N, in]`` inputs the per-sample gradient is the outer product
``g_n = delta_n x_n^T``: norms, projections and element-wise second moments are
small matrix products, and no per-sample gradient is ever formed. A bias's is
``g_n = delta_n`` (``x_n = 1``; its factors hold ``x`` ``None``): the same
statistics as reductions of ``delta`` alone, with no products with ones.

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

from cockpit import _stacked_views
from cockpit._layer_rows import LayerRows
from cockpit.engines._factor_samples import (
    histogram_sample,
    outer_product_extremes,
    stacked,
)
from cockpit.engines._sample_request import GroupRow, LayerStats, SampleRequest

__all__ = [
    "Factors",
    "from_linear_factor_groups",
    "from_linear_factors",
    "project_layers",
]


@dataclass
class Factors:
    """One ``Linear`` parameter's per-sample gradient factors, reduced later.

    Not detached: the reductions run under ``no_grad``. The histogram sample's
    positions are drawn for a group of equal layers at once, as it is reduced.

    Attributes:
        delta: ``[N, out]``, gradients of the per-sample losses w.r.t. the output,
            once multiplied by ``scale``.
        x: ``[N, in]``, the layer's inputs; ``None`` for a bias (the input factor
            is one).
        param: The ``[out, in]`` weight or ``[out]`` bias.
        rounding: See :class:`~cockpit.engines._sample_request.LayerStats`.
        scale: The factor ``delta`` still needs (BackPACK's output gradients carry
            the loss's ``1/N`` and the user's loss scale): one per step, shared by
            every layer, so it multiplies a group's stack once.

    """

    delta: Tensor
    x: Tensor | None
    param: Tensor
    rounding: float = 0.0
    scale: int | float | Tensor = 1


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
    return from_linear_factor_groups([Factors(delta, x, param)], request)[0]


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
        inputs = None if f.x is None else f.x.shape  # biases apart from weights
        key = (*f.delta.shape, inputs, f.delta.dtype, f.delta.device, scale)
        groups.setdefault(key, []).append(i)
    results: list[LayerStats] = [None] * len(factors)  # type: ignore[list-item]
    for members in groups.values():
        stats = _group([factors[i] for i in members], request)
        for i, layer in zip(members, stats, strict=True):
            layer.rounding = factors[i].rounding
            results[i] = layer
    return results


def _group(factors: list[Factors], request: SampleRequest) -> list[GroupRow]:
    """The statistics of layers with equal factor shapes, as one batched reduction."""
    delta = stacked([f.delta for f in factors])
    x = None if factors[0].x is None else stacked([f.x for f in factors])
    if not isinstance(factors[0].scale, int) or factors[0].scale != 1:
        delta = delta * factors[0].scale
    # The layers' statistics are rows of the stacks, selected only where read.
    stacks = _moments(delta, x, request)
    unbound: dict[str, tuple[Tensor, ...]] = {}  # shared: one unbind per stack
    stats = [GroupRow(stacks, j, unbound) for j in range(len(factors))]
    group = _Stacked(factors, delta, x)
    _projections(stats, group, request, stacks)
    if request.hist_budget is not None:
        stacks["low"], stacks["high"] = outer_product_extremes(delta, x)
        histogram_sample(stats, factors, delta, x, request, stacks)
    return stats


def _moments(delta: Tensor, x: Tensor | None, request: SampleRequest) -> dict:
    """``grad [G, D]``, ``sq_norms [G, N]``, ``dots [G, N]`` and ``sum_sq [G, D]``.

    Weights: ``g = delta^T x / N``, ``||g_n||^2 = ||delta_n||^2 ||x_n||^2``,
    ``g_n . g = delta_n^T G x_n``, ``sum_n g_n^2 = (delta^2)^T (x^2)``. Biases
    (``x`` ``None``): the same with ``x_n = 1``, sums over ``delta`` alone.
    """
    g, n = delta.shape[:2]
    delta_sq = delta**2
    if x is None:
        grad = delta.sum(1).div_(n)  # [G, out]
        sq_norms = delta_sq.sum(2)
        dots = torch.bmm(delta, grad[:, :, None])[:, :, 0]
        sum_sq = delta_sq.sum(1) if request.sum_sq else None
    else:
        # torch.bmm, not @: the same product without matmul's expand and view steps.
        grad = torch.bmm(delta.transpose(1, 2), x).div_(n)  # [G, out, in]
        x_sq = x**2
        sq_norms = delta_sq.sum(2) * x_sq.sum(2)  # [G, N]
        dots = torch.bmm(delta, grad).mul_(x).sum(2)
        sum_sq = None
        if request.sum_sq:
            sum_sq = torch.bmm(delta_sq.transpose(1, 2), x_sq)
    stacks = {"grad": grad.reshape(g, -1), "sq_norms": sq_norms, "dots": dots}
    if sum_sq is not None:
        stacks["sum_sq"] = sum_sq.reshape(g, -1)
    return stacks


@dataclass
class _Stacked:
    """A group's factors and their stacks ``delta [G, N, out]``, ``x [G, N, in]``.

    ``x`` is ``None`` for biases.
    """

    factors: list[Factors]
    delta: Tensor
    x: Tensor | None

    @torch.no_grad()
    def project(self, directions: Tensor) -> Tensor:
        """``[G, N]``: ``g_n . v = delta_n^T V x_n`` for ``[G, out * in]`` directions.

        Biases: ``delta_n . v``, one product.
        """
        d_out = self.delta.shape[2]
        if self.x is None:
            return torch.bmm(self.delta, directions.view(-1, d_out, 1))[:, :, 0]
        products = torch.bmm(self.delta, directions.view(-1, d_out, self.x.shape[2]))
        return products.mul_(self.x).sum(2)

    def part(self, rows: list[int] | slice) -> _Stacked:
        """The group's layers at ``rows`` (a slice: views, no copy)."""
        if isinstance(rows, slice):
            factors = self.factors[rows]
        else:
            factors = [self.factors[j] for j in rows]
        x = None if self.x is None else self.x[rows]
        return _Stacked(factors, self.delta[rows], x)


@dataclass(frozen=True)
class _LayerProjector:
    """``v [out * in] -> [N]`` for one layer of a group (:func:`project_layers`)."""

    group: _Stacked
    index: int

    def __call__(self, direction: Tensor) -> Tensor:
        j = self.index
        layer = self.group.part(slice(j, j + 1))
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
        stacked = _stacked_views.stacked_views([directions[n] for n in ordered])
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
        order = _stacked_views.index(positions, stacks[0].device)
    return LayerRows(names, _stacked_views.stacked_rows(stacks, order))


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
        part = group if len(directed) == len(factors) else group.part(directed)
        v = _stacked_views.stacked_views(
            [request.directions[id(factors[j].param)] for j in directed]
        )
        projected = part.project(v)
        if part is group:
            stacks["projection"] = projected
        else:
            for j, row in zip(directed, projected.unbind(0), strict=True):
                stats[j].projection = row
    if request.keep_for_projection:
        for j, layer in enumerate(stats):
            layer.project = _LayerProjector(group, j)
