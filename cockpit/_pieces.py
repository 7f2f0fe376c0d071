"""One optimizer step in pieces: micro-batches of gradient accumulation, and ranks.

Each ``track()`` block of a split step fills a :class:`Piece`: the states of its
micro-batch (:mod:`cockpit.states`), its per-layer statistics and its sample count.
:class:`StepPieces` holds them until the step's last block, reduces them into the
states of the whole step (every micro-batch of every rank) and hands them to the
quantities' ``finalize`` once, so the record equals what one process computes on the
concatenated batch:

- gradients (``grads``, ``sample_grads``, a mean-reduced loss's curvature
  diagonals) are means over a piece's samples, weighted by ``n_k / N`` into shares
  of the whole step's mean and summed; ``sum_sq`` and a summed loss's diagonals add;
  extremes take max/min; per-sample moments merge (Chan et al.'s formula); histogram
  samples concatenate inside the process and are counted on the agreed edges;
- ``dots`` (``g_n . g``, g of the whole step) is recomputed once ``g`` is reduced,
  from each piece's kept per-sample factors (``LayerStats.project``), exactly, and
  summarized over the process's samples;
- WHOLE states (Gram matrices, Kronecker factors, eigensolves, Hutchinson probes)
  have no reduction: their quantities are absent on split steps, with the reason.

Across ranks the same table maps onto collectives
(:class:`~cockpit._distributed.Ranks`), except that ``grads`` comes from DDP's own
average when every piece of every rank is equally large (:class:`_AveragedGrads`,
:mod:`cockpit._ddp_average`), and so does ``sample_grads`` when, in addition, every
piece ran in its parameters' full precision
(:func:`~cockpit._ddp_average.full_precision`). On parameters sharded by FSDP,
``grads`` is the rank's shard of FSDP's reduce-scattered gradient, and the
per-layer vectors (``grads``, ``params``, ``initial``, the step) enter only through
their norms, whose squares add over the shards (:mod:`cockpit._sharded`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from cockpit._ddp_average import full_precision
from cockpit._distributed import Ranks, leaves, rebuild
from cockpit._sharded import SHARDED_REASON, local, shard_norm_rows
from cockpit.engines._linear_factors import project_layers
from cockpit.engines.layer_stats import LayerStats
from cockpit.states import SPECS, Reduce, projected_moments, reduce_states
from cockpit.stats import moments

__all__ = ["Piece", "StepPieces", "WholeStep", "split_absence"]

#: States that only a step in one piece has (Gram matrices, Kronecker factors,
#: eigensolves; Hutchinson probes are checked per step, as only some engines fill them).
WHOLE = frozenset({"gram", "kronecker", "eigen"})

#: Why a quantity that reads a WHOLE state is absent when steps come in pieces.
WHOLE_REASON = (
    "it needs the whole batch in one process (a Gram matrix, Kronecker factors, an "
    "eigensolve or Hutchinson probes of the whole step), but each step is split into "
    "pieces (accumulation_steps > 1 or several ranks), which these states cannot be "
    "reduced from"
)

#: Why an exact Hessian diagonal is absent when steps come in pieces.
HESSIAN_REASON = (
    "BackPACK's exact Hessian diagonal (curvature='hessian') carries the user's loss "
    "scale (loss / accumulation_steps) in its residual terms, which cannot be "
    "undone per piece; use curvature='ggn_exact' or 'ggn_mc'"
)


def split_absence(quantity: Any, sharded: bool = False) -> str | None:
    """Why ``quantity`` cannot be tracked on split steps, or ``None`` if it can.

    ``sharded``: the ranks hold the parameters in shards (FSDP), where only the
    quantities marked ``shardable`` are computed (:mod:`cockpit._sharded`).
    """
    if sharded and not quantity.shardable:
        return SHARDED_REASON
    if quantity.states & WHOLE:
        return WHOLE_REASON
    if getattr(quantity, "curvature", None) == "hessian":
        return HESSIAN_REASON
    return None


@dataclass
class Piece:
    """What one ``track()`` block of a split step filled.

    Attributes:
        states: State name -> value, as :func:`cockpit.engines.fill.backward_states`
            fills them for the block's micro-batch.
        layers: Parameter name -> the block's per-sample statistics.
        size: ``n_k``, the block's number of samples.
        seconds: The tracker's own time spent in the block.
        loss_scales: The loss scale ``c`` of each of the block's backward passes
            (device scalars), if DDP's average may stand in for ``grads``.
        averaged: Parameter name -> DDP's average of the ranks' ``.grad`` ``[D_l]``
            after the block's synchronized backward pass
            (:mod:`cockpit._ddp_average`), or ``None``.
        autocast: A forward pass of the block ran under autocast.

    """

    states: dict[str, Any]
    layers: dict[str, LayerStats]
    size: int
    seconds: float
    loss_scales: list[Tensor] = field(default_factory=list)
    averaged: dict[str, Tensor] | None = None
    autocast: bool = False


@dataclass
class WholeStep:
    """The reduced states of a split step.

    Attributes:
        states: State name -> value of the whole step (the same on every rank).
        groups: Per piece on this rank, its per-sample statistics and sample count
            (alpha's slopes along the step, after ``optimizer.step()``).
        absent: State name -> why it could not be reduced.
        merge_step_states: Merges ``step_slopes`` across ranks after the step.
        sum_across: Sums a nesting of tensors over the ranks (histogram counts on
            the agreed edges), or ``None`` in one process.
        seconds: The tracker's own time spent in the step's blocks.

    """

    states: dict[str, Any]
    groups: list[tuple[dict[str, LayerStats], int]]
    absent: dict[str, str]
    merge_step_states: Callable[[dict[str, Any]], dict[str, Any]]
    sum_across: Callable[[Any], Any] | None
    seconds: float


def _mean_shares(mean_reduction: bool) -> set[str]:
    """States that hold a mean over a piece's samples (the rest add)."""
    return {"grads", "sample_grads"} | ({"diagonals"} if mean_reduction else set())


def _scaled(value: Any, factor: float | Tensor) -> Any:
    return rebuild(value, (leaf * factor for leaf in leaves(value)))


class StepPieces:
    """Collects the pieces of each step and reduces them at its last one.

    Args:
        accumulation_steps: ``track()`` blocks per optimizer step on each rank.
        mean_reduction: The loss averages over samples.
        ranks: The ranks sharing each step, or ``None`` for one process.

    """

    def __init__(
        self, accumulation_steps: int, mean_reduction: bool, ranks: Ranks | None
    ):
        self.accumulation_steps = accumulation_steps
        self.mean = mean_reduction
        self.ranks = ranks
        self.pieces: list[Piece] = []

    @property
    def split(self) -> bool:
        """Steps come in more than one piece."""
        return self.accumulation_steps > 1 or self.ranks is not None

    @property
    def pending(self) -> int:
        """Pieces of the current step seen so far."""
        return len(self.pieces)

    def drop(self) -> tuple[int, int]:
        """Forget the current step's pieces; ``(pieces, samples)`` they held.

        For a run that closes between a step's blocks: the optimizer never stepped
        on those samples, so no record describes them (the tracker warns and notes
        them in ``meta.json`` instead).
        """
        pieces, self.pieces = self.pieces, []
        return len(pieces), sum(p.size for p in pieces)

    def add(self, piece: Piece) -> WholeStep | None:
        """Keep ``piece``; at the step's last one, the whole step's states."""
        self.pieces.append(piece)
        if len(self.pieces) < self.accumulation_steps:
            return None
        pieces, self.pieces = self.pieces, []
        return self._reduce(pieces)

    def _reduce(self, pieces: list[Piece]) -> WholeStep:
        n = sum(p.size for p in pieces)
        seconds = sum(p.seconds for p in pieces)
        shares = _mean_shares(self.mean)
        absent = {}
        kept = []
        for piece in pieces:
            states = {}
            for name, value in piece.states.items():
                if SPECS[name].reduce is Reduce.WHOLE:
                    if value:
                        absent[name] = WHOLE_REASON
                elif name != "dots":
                    states[name] = (
                        _scaled(value, piece.size / n) if name in shares else value
                    )
            kept.append(states)
        states = reduce_states(kept)
        states.update(
            {k: {} for k in pieces[0].states if SPECS[k].reduce is Reduce.WHOLE}
        )
        groups = [(p.layers, p.size) for p in pieces]
        device = states["losses"].device
        across = None
        if self.ranks is not None:
            across = _Across(self.ranks, pieces, device, self.mean)
            across.reduce(states, shares)
        if "dots" in pieces[0].states:
            grads = states["sample_grads"]
            states["dots"] = projected_moments(groups, grads, project=project_layers)
        if across is None:
            return WholeStep(states, groups, absent, _unchanged, None, seconds)
        across.merge(states)
        if self.ranks.sharding is not None:
            states["shard_norms"] = across.shard_norms(states)
        return WholeStep(states, groups, absent, across.after_step, across.sum, seconds)


def _unchanged(states: dict[str, Any]) -> dict[str, Any]:
    return states


def _summarized(states: dict[str, Any]) -> list[str]:
    """The states held as per-sample moments (see :mod:`cockpit.stats.moments`)."""
    return [k for k in states if SPECS[k].reduce is Reduce.MOMENTS]


class _Across:
    """The collectives of one split step on several ranks (``cockpit._distributed``).

    The header exchanges host integers (:meth:`Ranks.gather_host`): each rank's
    sample count, its pieces' common size (``-1`` if they differ), whether its
    last piece caught DDP's averaged gradient and whether its pieces ran in full
    precision (:func:`~cockpit._ddp_average.full_precision`). When every piece of
    every rank has the same size and every rank caught the average, ``grads`` is
    taken from it (SAME) rather than summed: DDP has already reduced it; so is
    ``sample_grads`` if every rank also ran in full precision. Every rank decides
    alike, from the same header. On sharded parameters (FSDP) ``grads`` is always
    FSDP's reduce-scattered shard, and the norms of the sharded states are summed
    over the ranks (:meth:`shard_norms`, :mod:`cockpit._sharded`).
    """

    def __init__(
        self, ranks: Ranks, pieces: list[Piece], device: torch.device, mean: bool
    ):
        self.ranks = ranks
        sizes = {p.size for p in pieces}
        last = pieces[-1]
        header = [
            sum(p.size for p in pieces),
            sizes.pop() if len(sizes) == 1 else -1,
            int(last.averaged is not None),
            int(all(full_precision(p.autocast, p.layers.values()) for p in pieces)),
        ]
        rows = ranks.gather_host(header, device)
        self.sizes = [row[0] for row in rows]
        self.total = sum(self.sizes)
        size = rows[0][1]
        self.averaged = None
        #: States taken from DDP's average (or FSDP's shard of it) instead of summed.
        self.from_ddp: set[str] = set()
        if ranks.sharding is not None and "grads" in last.states:
            divide = ranks.sharding.divide_factor
            self.averaged = _AveragedGrads.of_shards(pieces, self.total, divide, mean)
            self.from_ddp = {"grads"}
        elif size > 0 and all(row[1] == size and row[2] for row in rows):
            self.averaged = _AveragedGrads.of_ddp(pieces, size, mean)
            precise = all(row[3] for row in rows)
            self.from_ddp = {"grads", "sample_grads"} if precise else {"grads"}

    def reduce(self, states: dict[str, Any], shares: set[str]) -> None:
        """Sum the summed states (shares of the whole mean), max/min the extremes."""
        share = self.sizes[self.ranks.rank] / self.total
        states["count"] = self.total
        same = self.from_ddp & states.keys()
        summed = [
            k
            for k in states
            if SPECS[k].reduce is Reduce.SUM and k != "count" and k not in same
        ]
        values = [
            _scaled(states[k], share) if k in shares else states[k] for k in summed
        ]
        flat = [leaf for value in values for leaf in leaves(value)]
        reduced = iter(self.ranks.all_reduce(flat, dist.ReduceOp.SUM))
        for name, value in zip(summed, values, strict=True):
            states[name] = rebuild(value, reduced)
        high = [k for k in states if SPECS[k].reduce is Reduce.MAX]
        low = [k for k in states if SPECS[k].reduce is Reduce.MIN]
        flat = [leaf for k in high for leaf in leaves(states[k])]
        flat += [-leaf for k in low for leaf in leaves(states[k])]
        if same:
            assert self.averaged is not None
            flat += self.averaged.scale_range()
        extremes = iter(self.ranks.all_reduce(flat, dist.ReduceOp.MAX))
        for name in high:
            states[name] = rebuild(states[name], extremes)
        for name in low:
            states[name] = rebuild(states[name], (-leaf for leaf in extremes))
        if same:
            mean = self.averaged.mean_gradient(*extremes)
            for name in same:  # the engine's layers: those with per-sample statistics
                states[name] = {layer: mean[layer] for layer in states[name]}

    def merge(self, states: dict[str, Any]) -> dict[str, Any]:
        """Merge the per-sample moments of every rank, on every rank.

        One ``all_gather`` of every summary ``[3]`` of this rank, then Chan et al.'s
        formula over the ranks' rows (:func:`cockpit.stats.moments.merge`).
        """
        names = [k for k in _summarized(states) if states[k] is not None]
        parts = [leaf for k in names for leaf in leaves(states[k])]
        if not parts:
            return states
        rows = self.ranks.all_gather(torch.stack(parts))  # [W, K, 3]
        merged = iter(moments.merge(rows).unbind(0))
        for name in names:
            states[name] = rebuild(states[name], merged)
        return states

    def after_step(self, states: dict[str, Any]) -> dict[str, Any]:
        """The step states of every rank: merged moments, the sharded step's norms."""
        states = self.merge(states)
        if self.ranks.sharding is not None and "step" in states:
            shards = {"step": list(states["step"].delta.values())}
            states["step_shard_norms"] = self._norm_rows(shards)["step"]
        return states

    def shard_norms(self, states: dict[str, Any]) -> dict[str, Tensor]:
        """``shard_norms``: the norms of the sharded per-layer states the step holds.

        ``grads`` (this rank's shard of the mean gradient), ``params`` and, with
        ``initial``, ``moved = params - initial``, in one collective.
        """
        shards = {}
        if "grads" in states:
            shards["grads"] = list(states["grads"].values())
        if "params" in states:
            params = [local(p) for p in states["params"].values()]
            shards["params"] = params
            if "initial" in states:
                initial = [local(states["initial"][name]) for name in states["params"]]
                shards["moved"] = torch._foreach_sub(params, initial)
        return self._norm_rows(shards) if shards else {}

    def _norm_rows(self, shards: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        return shard_norm_rows(
            lambda tensors: self.ranks.all_reduce(tensors, dist.ReduceOp.SUM), shards
        )

    def sum(self, value: Any) -> Any:
        """``value`` (a nesting of tensors and integers) summed over the ranks.

        The integers (histogram sample sizes) travel as one int64 tensor and come
        back as 0-d int64 tensors, which the writer converts off the training thread.
        """
        flat = list(leaves(value))
        tensors = [leaf for leaf in flat if not isinstance(leaf, int)]
        integers = [leaf for leaf in flat if isinstance(leaf, int)]
        numbers = torch.tensor(integers, dtype=torch.int64).to(tensors[0].device)
        summed = self.ranks.all_reduce([*tensors, numbers], dist.ReduceOp.SUM)
        sums, totals = iter(summed[:-1]), iter(summed[-1].unbind(0))
        return rebuild(
            value,
            (next(totals) if isinstance(leaf, int) else next(sums) for leaf in flat),
        )


class _AveragedGrads:
    """``g`` of the whole step from the average the ranks' ``.grad`` already holds.

    ``g = average * factor / s``, where the scale ``s`` of every backward pass of
    every rank must be the same: the MAX collective carries the largest ``s`` and
    the negated smallest, and a step where they differ logs a non-finite gradient
    norm instead of a wrong one.

    Args:
        average: Parameter name -> this rank's ``.grad`` (or its shard), flat.
        scales: ``s`` of each of this rank's backward passes (device scalars).
        factor: The host factor.

    """

    def __init__(self, average: dict[str, Tensor], scales: list[Tensor], factor: float):
        self.average = average
        self.scales = torch.stack([s.reshape(()) for s in scales])
        self.factor = factor

    @classmethod
    def of_ddp(cls, pieces: list[Piece], size: int, mean: bool) -> _AveragedGrads:
        """DDP's average, when every piece of every rank has ``size`` samples.

        DDP leaves ``(1/W) sum_r sum_k c w G_{r,k}`` in ``.grad`` (W ranks, A pieces
        each of n samples, loss scale c, ``w = 1`` for a mean loss and ``n`` for a
        sum, ``G_{r,k}`` the piece's mean gradient), so ``g = (1/(W A)) sum
        G_{r,k}`` is that times ``1 / (c w A)``: ``s = c``, ``factor = 1 / (w A)``.
        """
        assert pieces[-1].averaged is not None
        scales = [c for p in pieces for c in p.loss_scales]
        factor = (1.0 if mean else 1.0 / size) / len(pieces)
        return cls(pieces[-1].averaged, scales, factor)

    @classmethod
    def of_shards(
        cls, pieces: list[Piece], total: int, divide: float, mean: bool
    ) -> _AveragedGrads:
        """FSDP's reduce-scattered ``.grad`` shard, for pieces of any sizes.

        FSDP leaves (this rank's shard of) ``(1/F) sum_{r,k} c w G_{r,k}`` in
        ``.grad`` after the last piece's backward pass (F: its divide factor;
        ``n_{r,k}`` samples per piece, c, w, G as in :meth:`of_ddp`), which is the
        whole step's ``g = sum (n_{r,k} / N) G_{r,k}`` times ``k`` when ``c w N /
        (F n_{r,k}) = k`` for every piece: ``s = c w / n``, ``factor = F / N``.
        """
        scales = [c / p.size if mean else c for p in pieces for c in p.loss_scales]
        return cls(pieces[-1].states["grads"], scales, divide / total)

    def scale_range(self) -> list[Tensor]:
        """``[max s, -min s]`` over this rank's backward passes."""
        return [self.scales.amax(), -self.scales.amin()]

    def mean_gradient(self, highest: Tensor, negated_lowest: Tensor) -> dict:
        """Parameter name -> ``g_l``, NaN where the ranks' scales ``s`` differed.

        Equal up to rounding: ``c w / n`` of scales ``c = n_r W / N`` that make
        ``.grad`` the mean gradient of unequal shards rounds differently on each
        rank. Scales that differ by more than 8 units in the last place differ for
        a reason (ranks scaling their losses differently), not by rounding.
        """
        spread = highest + negated_lowest
        uniform = spread <= 8 * torch.finfo(highest.dtype).eps * highest.abs()
        scale = torch.where(uniform, self.factor / highest, torch.nan)
        return {name: average * scale for name, average in self.average.items()}
