"""Per-sample gradients reduced a chunk of samples at a time.

Same statistics as :func:`cockpit.engines.layer_stats.from_per_sample`, for producers
that never hold all ``[N, D_l]`` per-sample gradients at once: the torch.func replay
and the BackPACK engine's convolutions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import Tensor

from cockpit.engines._sample_request import LayerStats, SampleRequest, draw_positions

__all__ = ["DRAW", "ChunkReducer", "from_blocks"]

#: ``positions`` of :class:`ChunkReducer`: draw the histogram sample's positions now.
DRAW: Literal["draw"] = "draw"


class ChunkReducer:
    """Reduce per-sample gradients that arrive a chunk of samples at a time.

    Same statistics as :func:`~cockpit.engines.layer_stats.from_per_sample`, but
    only one ``[chunk, D_l]`` block needs to exist at any time: :meth:`add` reduces
    each block as it comes, and :meth:`finish` assembles the :class:`LayerStats`.
    ``g_n . g`` needs the mini-batch gradient up front (``grad``).

    Args:
        n: Batch size N.
        grad: ``[D_l]``, the mini-batch gradient (mean of the per-sample ones).
        param: The parameter.
        request: What to compute.
        positions: The histogram sample's positions if drawn already (``None``:
            all), or :data:`DRAW` to draw them now.
        mean_of_blocks: Log the mean of the blocks as ``grad`` (one more pass per
            block) instead of ``grad``, which then serves ``g_n . g`` only.

    """

    def __init__(
        self,
        n: int,
        grad: Tensor,
        param: Tensor,
        request: SampleRequest,
        positions: Tensor | Literal["draw"] | None = DRAW,
        mean_of_blocks: bool = False,
    ):
        self.n, self.grad, self.param, self.request = n, grad, param, request
        self.direction = request.directions.get(id(param))
        self.hist = request.hist_budget is not None
        if isinstance(positions, str):
            positions = (
                draw_positions(request, n, grad.numel(), grad.device)
                if self.hist
                else None
            )
        self.positions = positions
        self.block_sum = grad.new_zeros(grad.shape) if mean_of_blocks else None
        self.parts: dict[str, list[Tensor]] = {
            "sq": [],
            "dots": [],
            "proj": [],
            "hist": [],
            "extremes": [],
        }
        self.sum_sq: Tensor | None = None
        self.squares: Tensor | None = None

    def add(self, block: Tensor, reused: bool = False) -> None:
        """Reduce ``block`` ``[c, D_l]``, the next c samples' gradients.

        Args:
            block: The per-sample gradients.
            reused: The caller overwrites ``block`` later (copy what is kept; it
                may be overwritten here, after every other read).

        """
        parts = self.parts
        parts["dots"].append(block @ self.grad)
        if self.block_sum is not None:
            self.block_sum += block.sum(0)
        if self.direction is not None:
            parts["proj"].append(block @ self.direction)
        if self.hist:
            parts["extremes"].extend(torch.aminmax(block))  # stacked once, in finish
            picked = (
                block
                if self.positions is None
                else block.index_select(1, self.positions)
            )
            if reused and self.positions is None:
                picked = picked.clone()  # indexing above copies already
            parts["hist"].append(picked.reshape(-1))
        if self.request.sum_sq:
            # One squared copy serves both sums: a block the caller overwrites
            # anyway is squared in place, last, so no second chunk-sized buffer
            # competes with it for the cache; others go into one buffer per layer.
            out = block if reused else self._squares(block)
            squares = torch.square(block, out=out)
            parts["sq"].append(squares.sum(1))
            summed = squares.sum(0)
            self.sum_sq = summed if self.sum_sq is None else self.sum_sq.add_(summed)
        else:
            parts["sq"].append(torch.linalg.vector_norm(block, dim=1).square())

    def _squares(self, block: Tensor) -> Tensor:
        """A ``[c, D_l]`` buffer for ``block``'s squares, kept for the next blocks."""
        if self.squares is None or self.squares.shape[0] < block.shape[0]:
            self.squares = block.new_empty(block.shape)
        return self.squares[: block.shape[0]]

    def finish(self, project: Callable[[Tensor], Tensor] | None) -> LayerStats:
        """The statistics of all blocks added.

        Args:
            project: ``v [D_l] -> [N]``, ``g_n . v`` for a direction known only
                later (needed if the request keeps projections).

        """
        parts, request = self.parts, self.request
        grad = self.grad if self.block_sum is None else self.block_sum / self.n
        stats = LayerStats(
            grad=grad,
            sq_norms=torch.cat(parts["sq"]),
            dots=torch.cat(parts["dots"]),
        )
        stats.sum_sq = self.sum_sq
        if self.direction is not None:
            stats.projection = torch.cat(parts["proj"])
        if self.hist:
            low_high = torch.stack(parts["extremes"])  # min, max, min, max, ...
            stats.low, stats.high = low_high[0::2].min(), low_high[1::2].max()
            stats.hist_values = torch.cat(parts["hist"])
            values = self.param.detach().reshape(-1)
            if self.positions is not None:
                stats.hist_weight = self.grad.numel() / self.positions.numel()
                values = values[self.positions]
            if request.with_param_values:
                stats.hist_params = values.repeat(self.n)
        if request.keep_for_projection:
            stats.project = project
        return stats


def from_blocks(
    blocks: Iterable[dict[str, Tensor]],
    n: int,
    grads: dict[str, Tensor],
    params: dict[str, Tensor],
    request: SampleRequest,
    reused: bool = False,
) -> dict[str, LayerStats]:
    """Reduce several parameters' per-sample gradients arriving in sample blocks.

    Args:
        blocks: Per block of consecutive samples, parameter name -> ``[c, D_l]``
            per-sample gradients (the replays' chunks).
        n: Batch size N.
        grads: Parameter name -> ``[D_l]``, the mini-batch gradient.
        params: Parameter name -> parameter, for the names to reduce.
        request: What to compute.
        reused: The blocks are the caller's to overwrite (:meth:`ChunkReducer.add`):
            they are squared in place, with no squares buffer per parameter. Not
            with ``request.keep_for_projection``.

    Returns:
        Parameter name -> statistics. With ``request.keep_for_projection`` the
        blocks are kept (``[N, D_l]`` per parameter) to project later directions.
    """
    assert not (reused and request.keep_for_projection), "kept blocks are read later"
    reducers = {
        name: ChunkReducer(n, grads[name], p, request) for name, p in params.items()
    }
    kept: dict[str, list[Tensor]] = {name: [] for name in params}
    for block in blocks:
        for name, reducer in reducers.items():
            reducer.add(block[name], reused)
            if request.keep_for_projection:
                kept[name].append(block[name])
    return {
        name: reducer.finish(
            torch.cat(kept[name]).__matmul__ if request.keep_for_projection else None
        )
        for name, reducer in reducers.items()
    }
