"""The batch replay's rows, one per backward pass, stacked into blocks of samples.

The loop route of :mod:`cockpit.engines.batch_replay` pulls one cotangent back per
``autograd.grad`` and gets one Jacobian row: per parameter a gradient of its shape.
Reducing each row as it comes costs its reduction's operations (a handful per
parameter tensor) once per row; on a GPU, where each operation's cost is its launch
and Python call, not its arithmetic, that is most of the step. :func:`stacked`
gathers c consecutive rows and stacks them once per parameter (flattened once per
block, not per row), so the reductions run once per block.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["stacked"]


def stacked(
    rows: Iterator[dict[str, Tensor]], count: int
) -> Iterator[dict[str, Tensor]]:
    """``{name: [c, D_l]}``: ``count`` consecutive rows per block, copied together.

    The last block holds what is left (``m mod count`` rows if nonzero). With
    ``count = 1`` each row is only flattened (a view, uncopied); otherwise every
    block, a short last one included, is a new tensor per parameter that the
    caller owns (it may overwrite it).

    Memory: the ``count`` rows of one block (the whole network's ``[count, D]``)
    and, while one parameter's rows are stacked, that parameter's
    ``[count, D_l]`` once more: each row's tensor of a parameter is released as
    soon as that parameter's block is formed.

    Args:
        rows: Parameter name -> its gradient (of the parameter's shape), one
            dictionary per row, in order.
        count: Rows per block, at least 1.

    """
    assert count >= 1, count
    if count == 1:
        for row in rows:
            yield {name: g.reshape(1, -1) for name, g in row.items()}
        return
    gathered: list[dict[str, Tensor]] = []
    for row in rows:
        gathered.append(row)
        if len(gathered) == count:
            yield _stack(gathered)
            gathered = []
    if gathered:
        yield _stack(gathered)


def _stack(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """``{name: [c, D_l]}`` of c rows, taking each parameter's rows out of ``rows``."""
    c = len(rows)
    return {
        name: torch.stack([row.pop(name) for row in rows]).reshape(c, -1)
        for name in list(rows[0])
    }
