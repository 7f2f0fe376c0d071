"""Per-layer values kept as one stacked tensor, split by name only where read.

A per-layer statistic of L parameter tensors is one ``[L, ...]`` tensor on the
training thread: the quantities' formulas run on it whole, and the log's per-layer
layout (parameter name -> value) is made from it on the writer's thread
(:meth:`cockpit._record.TensorRecord.materialize`). Splitting it into one tensor per
parameter on the training thread cost one ``select`` operation per parameter tensor
and value, 1,197 per step on a 64-layer MLP (132 tensors) under the economy preset.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["LayerRows", "stacked"]


class LayerRows(Mapping[str, Tensor]):
    """Parameter name -> row ``l`` of a ``[L, ...]`` tensor, in the names' order.

    A read-only mapping: reading one name selects its row (one operation); the
    stacked tensor itself is :attr:`rows`.

    Args:
        names: The L parameter names, in the order of the rows.
        rows: ``[L, ...]``.

    """

    __slots__ = ("_index", "names", "rows")

    def __init__(self, names: Sequence[str], rows: Tensor) -> None:
        if len(names) != rows.shape[0]:
            raise ValueError(
                f"LayerRows needs one row per name: got {len(names)} names and "
                f"{rows.shape[0]} rows. Pass the names of the rows' layers, in order."
            )
        self.names = list(names)
        self.rows = rows
        self._index: dict[str, int] | None = None

    def __getitem__(self, name: str) -> Tensor:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        return self.rows[self._index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"LayerRows({len(self.names)} layers, rows {tuple(self.rows.shape)})"


def stacked(values: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """``[L, ...]``: the values of ``names`` stacked in that order.

    The stacked tensor itself, without an operation, where ``values`` is a
    :class:`LayerRows` of exactly those names in that order.
    """
    if isinstance(values, LayerRows) and values.names == list(names):
        return values.rows
    return torch.stack([values[name] for name in names])
