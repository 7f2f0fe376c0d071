"""Rows of a few ``[G, D]`` stacks, read as one value per parameter tensor.

Layers reduced together (equal ``Linear`` layers, :mod:`cockpit.engines._linear_factors`)
hold their statistics as rows of their group's stack. :class:`StackedViews` hands
them to readers by parameter name without selecting a row per layer; readers that
take the stacks whole (norms, the rows of per-layer scalars) run one operation per
stack. :func:`stacked_views` is ``torch.stack`` that returns a strided view where
the tensors are evenly spaced in one buffer, :func:`stacked_rows` the stacks'
rows in the layers' order, and :func:`index` an index tensor made once per layout
and device.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor

__all__ = ["StackedViews", "index", "on_device", "stacked_rows", "stacked_views"]


class StackedViews(Mapping[str, Tensor]):
    """Parameter name -> a row of one of a few ``[G, D]`` stacks, selected when read.

    A read-only mapping to every reader; a stack is unbound into its rows only
    when one of its values is first read (one operation per stack), so a step
    whose readers take the stacks whole (:func:`norm_rows`, :meth:`rows`,
    :meth:`numels`) makes none.

    Args:
        slots: Name -> (the number of its stack in ``stacks``, its row there), in
            the mapping's order; shared by every field of one layout.
        stacks: ``[G_k, D_k]`` each.
        order: The positions, in the stacks' concatenated rows, of the values in
            the mapping's order (``None``: the same order).

    """

    def __init__(
        self,
        slots: Mapping[str, tuple[int, int]],
        stacks: list[Tensor],
        order: Tensor | None,
    ):
        self._slots = slots
        self._unbound: dict[int, tuple[Tensor, ...]] = {}
        self.stacks = stacks
        self.order = order

    def __getitem__(self, name: str) -> Tensor:
        k, row = self._slots[name]
        rows = self._unbound.get(k)
        if rows is None:  # one unbind per stack, when a row of it is first read
            rows = self._unbound[k] = self.stacks[k].unbind(0)
        return rows[row]

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def listed(self) -> list[Tensor]:
        """The values in the mapping's order: one unbind per stack, no call per row."""
        unbound = [stack.unbind(0) for stack in self.stacks]
        return [unbound[k][row] for k, row in self._slots.values()]

    def numels(self) -> list[int]:
        """``D_l`` of every value, in the mapping's order, without selecting rows."""
        sizes = [stack.shape[1:].numel() for stack in self.stacks]
        return [sizes[k] for k, _ in self._slots.values()]

    def same_layout(self, other: Mapping[str, Tensor]) -> bool:
        """Whether ``other`` holds its values in stacks of the same shapes and slots."""
        return (
            isinstance(other, StackedViews)
            and other._slots is self._slots
            and [s.shape for s in other.stacks] == [s.shape for s in self.stacks]
        )

    def rows(self) -> Tensor:
        """``[L, ...]``: the values stacked in the mapping's order, from the stacks.

        For rows of one shape (per-layer scalars such as the extremes).
        """
        return stacked_rows(self.stacks, self.order)


def stacked_views(tensors: list[Tensor]) -> Tensor:
    """``[G, D]``: ``torch.stack`` of 1-D tensors, a view where they allow one.

    Equal-sized views into one buffer at equal spacing (a group's rows of
    :func:`split`'s views: equal layers' weights, interleaved with their biases) are
    one strided view of it, no copy; anything else is stacked.
    """
    first = tensors[0]
    if len(tensors) == 1:
        return first.unsqueeze(0)
    offsets = [t.storage_offset() for t in tensors]
    step = offsets[1] - offsets[0]
    storage = first.untyped_storage().data_ptr()
    if (
        first.dim() == 1
        and step >= first.numel()
        and all(
            t.shape == first.shape
            and t.stride() == (1,)
            and t.dtype == first.dtype
            and t.untyped_storage().data_ptr() == storage
            for t in tensors
        )
        and offsets == list(range(offsets[0], offsets[0] + step * len(tensors), step))
    ):
        return first.as_strided((len(tensors), first.numel()), (step, 1), offsets[0])
    return torch.stack(tensors)


def stacked_rows(stacks: list[Tensor], order: Tensor | None) -> Tensor:
    """``[L, ...]``: the rows at ``order`` of the stacks' concatenation (all: None)."""
    rows = torch.cat(stacks) if len(stacks) > 1 else stacks[0]
    return rows if order is None else rows.index_select(0, order)


@functools.lru_cache(maxsize=64)
def index(positions: tuple[int, ...], device: torch.device) -> Tensor:
    """``positions`` as an index tensor on ``device``, made once per layout.

    No host-to-device copy per step (:func:`on_device`).
    """
    return on_device(torch.tensor(positions), device)


@functools.cache
def on_device(index: Tensor, device: torch.device) -> Tensor:
    """``index`` on ``device``, copied once per device.

    To a GPU from pinned memory without waiting: a layout first met after the
    first step must not make the training thread wait for the device.
    """
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)
