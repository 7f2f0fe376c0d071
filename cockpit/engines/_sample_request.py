"""What a step asks of each layer, what a layer gives back, and where histograms look.

:class:`SampleRequest` says which statistics the due quantities need;
:class:`LayerStats` holds one parameter tensor's; :func:`sample_positions` and
:func:`draw_positions` choose the parameter positions of the histogram sample, which
every route of :mod:`cockpit.engines.layer_stats` shares.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from cockpit._stacked_views import StackedViews, index, stacked_rows

__all__ = [
    "MIN_LAYER_SAMPLES",
    "GroupLayout",
    "GroupRow",
    "LayerStats",
    "SampleRequest",
    "draw_positions",
    "field_views",
    "sample_positions",
    "stacked_field",
    "widen",
]

#: Fewest histogram samples a layer gets when the budget is split by layer size, so
#: that per-layer 2D histograms of small layers are not empty.
MIN_LAYER_SAMPLES = 1024


@dataclass
class SampleRequest:
    """What the due quantities need from each layer at this step.

    Attributes:
        mean_reduction: The loss averages over samples (scale per-sample gradients by N).
        sum_sq: Compute ``sum_n g_{n,j}^2`` (GSNR, early stopping).
        hist_budget: Histogram sample size for the whole network; ``None``: no
            histogram; ``0``: exact (every element, costly).
        with_param_values: Also collect the parameter value of each sampled element.
        total_params: D, the number of tracked parameters (splits the budget).
        directions: Per parameter, a flat direction ``v`` to project on now
            (``g_n . v``), e.g. the last step taken (alpha).
        keep_for_projection: Keep what is needed to project on a direction known only
            after ``optimizer.step()`` (alpha's start point).
        generator: Random generator for the histogram sample (never the global one:
            tracking must not change the training's random stream).
        loss_scale: ``c``, the factor the user applied to the loss before
            ``backward()`` (``loss / accumulation_steps``, a gradient scaler), read
            at backward time as the gradient arriving at the loss module's output;
            ``None``: 1.

    """

    mean_reduction: bool
    sum_sq: bool = False
    hist_budget: int | None = None
    with_param_values: bool = False
    total_params: int = 1
    directions: dict[int, Tensor] = field(default_factory=dict)
    keep_for_projection: bool = False
    generator: Callable[[torch.device], torch.Generator] | None = None
    loss_scale: Callable[[], Tensor] | None = None
    _scales: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(
        default_factory=dict, repr=False
    )
    _positions: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    def scale(self, batch_size: int) -> int | Tensor:
        """Factor from output gradients of the user's loss to per-sample gradients.

        A mean-reduced loss carries ``1/N`` in its output gradients, a summed one not,
        and both carry the user's loss scale ``c``: the factor is ``N / c`` or ``1 / c``.
        Computed once per batch size and backward pass, not once per layer.
        """
        factor = batch_size if self.mean_reduction else 1
        if self.loss_scale is None:
            return factor
        c = self.loss_scale()
        # Keyed by c's identity (one tensor per backward pass), which c itself,
        # kept in the value, holds fixed.
        key = (batch_size, id(c))
        if key not in self._scales:
            self._scales[key] = (c, factor / c)
        return self._scales[key][1]


@dataclass
class LayerStats:
    """Sufficient statistics of one parameter tensor's per-sample gradients.

    Attributes:
        grad: ``[D_l]``, the mini-batch gradient ``g = (1/N) sum_n g_n``.
        sq_norms: ``[N]``, ``||g_n||^2``.
        dots: ``[N]``, ``g_n . g`` (this layer's g).
        low: ``[]``, smallest per-sample gradient element (with histograms).
        high: ``[]``, largest per-sample gradient element (with histograms).
        sum_sq: ``[D_l]``, ``sum_n g_{n,j}^2``, if requested.
        projection: ``[N]``, ``g_n . v`` for the requested direction v, if any.
        project: ``v [D_l] -> [N]``, ``g_n . v`` for a direction known later.
        hist_values: ``[K]``, uniformly sampled per-sample gradient elements.
        hist_params: ``[K]``, the parameter values at the same positions.
        hist_weight: How many elements each sampled one stands for (``N D_l / K``).
        rounding: Machine epsilon of the narrower dtype the layer's inputs or output
            gradients had (bfloat16 or float16 under autocast; the statistics are
            computed in the parameter's dtype from those values), 0 if none was.
        group: Field -> ``[G, ...]``, the stacked statistics of the layers reduced
            together with this one, whose row ``index`` this layer's are
            (:func:`stacked_field`); ``None`` for a layer reduced alone.
        index: This layer's row in ``group``.

    """

    grad: Tensor
    sq_norms: Tensor
    dots: Tensor
    low: Tensor | None = None
    high: Tensor | None = None
    sum_sq: Tensor | None = None
    projection: Tensor | None = None
    project: Callable[[Tensor], Tensor] | None = None
    hist_values: Tensor | None = None
    hist_params: Tensor | None = None
    hist_weight: float = 1.0
    rounding: float = 0.0
    group: dict[str, Tensor] | None = None
    index: int = 0

    @property
    def samples(self) -> int:
        """N (or M, the samples the statistics hold): the length of ``sq_norms``."""
        return self.sq_norms.shape[0]


class _Row:
    """A :class:`GroupRow` field: the layer's row of its group's stack, when read.

    Reading gives the row of ``group[field]`` (the stack is unbound once, for the
    first layer of the group that reads it: one operation per stack, as before the
    rows were lazy), or ``None`` if the group holds no stack of ``field``; a value
    assigned to the layer (a projection of part of a group) takes its place.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: GroupRow | None, owner: type) -> Any:
        if layer is None:
            return self
        if self.name in layer.__dict__:
            return layer.__dict__[self.name]
        stack = layer.group.get(self.name)
        if stack is None:
            return None
        rows = layer.unbound.get(self.name)
        if rows is None:  # one unbind per stack, for the first layer that reads it
            rows = layer.unbound[self.name] = stack.unbind(0)
        return rows[layer.index]

    def __set__(self, layer: GroupRow, value: Tensor | None) -> None:
        layer.__dict__[self.name] = value


class GroupRow(LayerStats):
    """A layer reduced with others: its statistics are rows of the group's stacks.

    No operation per layer when the group is reduced: a row is selected only where
    a reader asks this layer for it; the states take the stacks whole
    (:func:`stacked_field`, :func:`field_views`).

    Args:
        group: Field -> ``[G, ...]``, the group's stacked statistics.
        index: This layer's row in them.
        unbound: Field -> the rows of its stack, filled as they are read; one
            dict shared by the group's layers.

    """

    samples: int = 0  # type: ignore[assignment]  # an attribute here, not a property
    grad = _Row()
    sq_norms = _Row()
    dots = _Row()
    low = _Row()
    high = _Row()
    sum_sq = _Row()
    projection = _Row()
    hist_values = _Row()
    hist_params = _Row()

    def __init__(
        self,
        group: dict[str, Tensor],
        index: int,
        unbound: dict[str, tuple[Tensor, ...]],
    ):
        self.group = group
        self.index = index
        self.unbound = unbound
        self.samples = group["sq_norms"].shape[1]  # no row selected, no call


@dataclass(frozen=True)
class GroupLayout:
    """Where each layer's row lies in its group's stacks: the same for every field.

    Layers reduced together (:mod:`cockpit.engines._linear_factors`) hold their
    group's stacked statistics (``group``: field -> ``[G, ...]``) and their row in
    it (``index``). The layout is found once per step (a Python loop over the
    layers); each field then takes its groups' stacks, one lookup per group.

    Attributes:
        groups: Each group's stacks once, in the order of its first layer.
        slots: Parameter name -> (its group's number in ``groups``, its row).
        order: The layers' positions in the groups' concatenated rows; ``None`` if
            they are in order.

    """

    groups: tuple[dict[str, Tensor], ...]
    slots: dict[str, tuple[int, int]]
    order: tuple[int, ...] | None

    @classmethod
    def of(cls, layers: Mapping[str, LayerStats]) -> GroupLayout | None:
        """The layout of ``layers``; ``None`` if one was reduced alone (no group)."""
        numbers: dict[int, int] = {}  # id(group) -> its number
        groups: list[dict[str, Tensor]] = []
        starts: list[int] = []  # each group's first row in the concatenation
        slots: dict[str, tuple[int, int]] = {}
        positions: list[int] = []
        total = 0
        for name, layer in layers.items():
            group = layer.group
            if group is None:
                return None
            k = numbers.get(id(group))
            if k is None:
                k = numbers[id(group)] = len(groups)
                groups.append(group)
                starts.append(total)
                total += group["sq_norms"].shape[0]  # G: every stack is [G, ...]
            slots[name] = (k, layer.index)
            positions.append(starts[k] + layer.index)
        in_order = total == len(positions) and positions == list(range(total))
        return cls(tuple(groups), slots, None if in_order else tuple(positions))

    def stacks(self, field: str) -> tuple[list[Tensor], Tensor | None] | None:
        """The groups' stacks of ``field``, and :attr:`order` as an index on them.

        The index is made once per layout and device; ``None`` if a group holds no
        stack of ``field``.
        """
        found = [group.get(field) for group in self.groups]
        stacks = [stack for stack in found if stack is not None]
        if len(stacks) < len(found):
            return None
        order = None if self.order is None else index(self.order, stacks[0].device)
        return stacks, order


def stacked_field(
    layers: Mapping[str, LayerStats], field: str, layout: GroupLayout | None
) -> Tensor | None:
    """``[L, ...]``: ``field`` of every layer, stacked in their order.

    With a ``layout``, the groups' stacks are concatenated and the rows put in order
    by one ``index_select``: the same values as stacking each layer's row, without
    an operation per layer. ``None`` if a layer has no value for ``field``.
    """
    found = None if layout is None else layout.stacks(field)
    if found is None:
        values = [getattr(layer, field) for layer in layers.values()]
        return None if any(v is None for v in values) else torch.stack(values)
    return stacked_rows(*found)


def field_views(
    layers: Mapping[str, LayerStats], field: str, layout: GroupLayout | None
) -> Mapping[str, Tensor]:
    """Parameter name -> ``field`` of its layer; with the groups' stacks if all have.

    A :class:`~cockpit._stacked_views.StackedViews` where every layer's value is a
    row of its group's stack: rows are selected only when read (norms reduce the
    stacks, not each row).
    """
    found = None if layout is None else layout.stacks(field)
    if layout is None or found is None:
        return {name: getattr(layer, field) for name, layer in layers.items()}
    return StackedViews(layout.slots, *found)


def sample_positions(request: SampleRequest, n: int, numel: int) -> int:
    """How many parameter positions of a layer the histogram sample takes.

    The sample takes all N per-sample values at each of ``m`` parameter positions
    drawn uniformly (with replacement), so every per-sample element has the same
    chance to be in it; only ``m`` random numbers are drawn and the gathers read whole
    columns. The budget (in elements) is split across layers in proportion to their
    size, at least :data:`MIN_LAYER_SAMPLES` elements per layer. Budget 0 (exact)
    takes every position, and so does a share of half the positions or more
    (gathering that many costs more than taking all).
    """
    assert request.hist_budget is not None
    if request.hist_budget == 0:
        return numel
    share = math.ceil(request.hist_budget * numel / request.total_params)
    positions = math.ceil(max(share, MIN_LAYER_SAMPLES) / n)
    return numel if 2 * positions >= numel else positions


def draw_positions(
    request: SampleRequest,
    n: int,
    numel: int,
    device: torch.device,
    layers: int | None = None,
) -> Tensor | None:
    """``[m]`` uniformly drawn parameter positions, or ``None`` for all of them.

    ``m`` is looked up, not recomputed, for a layer size seen before in this step
    (no further Python call per layer). ``layers``: ``[layers, m]``, the positions
    of that many layers of equal size, independent draws in one call.
    """
    m = request._positions.get((n, numel))
    if m is None:
        m = request._positions[n, numel] = sample_positions(request, n, numel)
    if m == numel:
        return None
    assert request.generator is not None
    gen = request.generator(device)
    shape = (m,) if layers is None else (layers, m)
    return torch.randint(numel, shape, generator=gen, device=device)


def widen(tensors: list[Tensor], dtype: torch.dtype) -> tuple[list[Tensor], float]:
    """Floating tensors cast to ``dtype`` (a parameter's), and the rounding they had.

    Under autocast a layer's inputs and output gradients may be bfloat16 or float16
    while its parameter is float32: the per-sample statistics are computed in the
    parameter's dtype from the narrower values.

    Returns:
        The tensors (integer ones unchanged) and the largest machine epsilon among
        the floating dtypes narrower than ``dtype`` (0 if none).
    """
    for tensor in tensors:  # the usual case: all of dtype, no further Python call
        if tensor.dtype != dtype:
            break
    else:
        return tensors, 0.0
    precision = _eps(dtype)
    rounding = max((_eps(t.dtype) for t in tensors), default=0.0)
    rounding = rounding if rounding > precision else 0.0
    cast = [
        t.to(dtype) if t.dtype != dtype and t.is_floating_point() else t
        for t in tensors
    ]
    return cast, rounding


@functools.cache
def _eps(dtype: torch.dtype) -> float:
    """Machine epsilon of a floating dtype, 0 for others.

    Cached: ``torch.finfo`` costs microseconds per call, twice per layer and step.
    """
    return torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
