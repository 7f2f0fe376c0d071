"""Around ``optimizer.step()``: records waiting for the step taken, one step per block.

Quantities with ``step_states`` (``update_size``, ``alpha``) need the step the
optimizer takes after a tracked block. The block's record then waits in an
:class:`AwaitingStep`; one-shot hooks snapshot the parameters before the next
``optimizer.step()`` and diff them after it, the step states are filled
(:func:`cockpit.engines.fill.step_states`) and the quantities' ``finalize_step``
completes the record. A record whose step never comes (the next block starts, or the
run closes) is submitted as it is.

A block may also end inside ``optimizer.step(closure)``, when the closure runs the
forward and backward pass (PyTorch Lightning's automatic optimization does): the
step's pre-hooks have run by then, so the parameters are snapshot at once (the
closure does not change them) and only the post-hook waits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from cockpit import _flat_buffers
from cockpit._record import TensorRecord
from cockpit._sharded import is_shard, local
from cockpit.engines import fill
from cockpit.engines.layer_stats import LayerStats
from cockpit.exceptions import UsageError
from cockpit.quantities import Quantity
from cockpit.quantities._view import StepStates
from cockpit.states import StepTaken

__all__ = ["AwaitingStep", "OptimizerWatch"]


@dataclass
class AwaitingStep:
    """A step's record that waits for ``optimizer.step()`` to add the step taken.

    A split step's (:mod:`cockpit._pieces`) merges the step states of every rank
    (``gather``) before finalizing them.
    """

    states: StepStates
    layers: list[tuple[dict[str, LayerStats], int]]
    record: TensorRecord
    quantities: list[Quantity]
    before: list[Tensor] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    gather: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class OptimizerWatch:
    """Watches the optimizer's steps for one Cockpit.

    Args:
        optimizer: The user's optimizer.
        params: Parameter name -> tracked parameter.
        submit: Hands a finished record to the writer.

    Attributes:
        flat: The parameters' flat views, made once (also ``distance``'s).

    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: dict[str, nn.Parameter],
        submit: Callable[[TensorRecord], None],
    ):
        self.optimizer, self.params, self._submit = optimizer, params, submit
        self.flat = _FlatParams(params)
        self._awaiting: AwaitingStep | None = None
        self._stepped = True
        self._stepping = False
        self._hooks = [
            optimizer.register_step_pre_hook(self._mark_stepping),
            optimizer.register_step_post_hook(self._mark_stepped),
        ]

    def _mark_stepping(self, optimizer, args, kwargs) -> None:
        self._stepping = True

    def _mark_stepped(self, optimizer, args, kwargs) -> None:
        self._stepped = True
        self._stepping = False

    def check_accumulation(self, accumulation_steps: int) -> None:
        """Refuse a step's first block before ``optimizer.step()`` on kept gradients.

        That is gradient accumulation over more micro-batches than the Cockpit was
        told (``accumulation_steps``): the record would describe only some of the
        batch the optimizer steps on, so it is refused rather than logged as if it
        were.
        """
        stepped, self._stepped = self._stepped, False
        if stepped or all(p.grad is None for p in self.params.values()):
            return
        raise UsageError(
            "track() was entered again before optimizer.step(), with the gradients "
            "of the previous blocks still in .grad: gradient accumulation over "
            f"micro-batches, more than accumulation_steps={accumulation_steps}. Pass "
            "Cockpit(..., accumulation_steps=K) with the number of track() blocks "
            "per optimizer.step(), or call optimizer.zero_grad() between the blocks "
            "if they are separate steps."
        )

    def check_continuation(self, block: int, accumulation_steps: int) -> None:
        """Refuse an ``optimizer.step()`` inside a step's blocks (after ``block``)."""
        stepped, self._stepped = self._stepped, False
        if not stepped:
            return
        raise UsageError(
            f"optimizer.step() ran after {block} track() block(s), but the Cockpit "
            f"has accumulation_steps={accumulation_steps}: every optimizer step must "
            "cover that many blocks. Pass the number of micro-batches per "
            "optimizer.step() as accumulation_steps."
        )

    def wait(self, awaiting: AwaitingStep, seconds: float) -> None:
        """Finish ``awaiting``'s record after the next ``optimizer.step()``."""
        awaiting.record.values["tracker_time"] = seconds
        self._awaiting = awaiting
        _install_hooks(self.optimizer, self.flat, awaiting, self.flush, self._stepping)

    def flush(
        self, awaiting: AwaitingStep | None = None, taken: StepTaken | None = None
    ) -> None:
        """Submit the waiting record, completed with the step ``taken`` if known."""
        awaiting = awaiting or self._awaiting
        if awaiting is None or awaiting is not self._awaiting:
            return
        self._awaiting = None
        start = time.perf_counter()
        for handle in awaiting.handles:
            handle.remove()
        if taken is not None:
            states, step = awaiting.states, awaiting.states.step
            keeping = [q for q in awaiting.quantities if q.keeps_for_step(step)]
            filled = fill.step_states(fill.declared(keeping), taken, awaiting.layers)
            states.update(awaiting.gather(filled) if awaiting.gather else filled)
            for quantity in awaiting.quantities:
                value = quantity.finalize_step(states)
                if value is not None:
                    awaiting.record.values[quantity.name] = value
        awaiting.record.values["tracker_time"] += time.perf_counter() - start
        self._submit(awaiting.record)

    def close(self) -> None:
        """Submit what waits and stop watching."""
        self.flush()
        for hook in self._hooks:
            hook.remove()


def _install_hooks(
    optimizer: torch.optim.Optimizer,
    flat: _FlatParams,
    awaiting: AwaitingStep,
    done: Callable[[AwaitingStep, StepTaken | None], None],
    inside_step: bool,
) -> None:
    """One-shot hooks around the next ``optimizer.step()``: snapshot, then diff.

    ``inside_step``: the block ended inside ``optimizer.step(closure)``, whose
    pre-hooks have already run; the snapshot is taken now instead.
    """

    def before(opt, args, kwargs) -> None:
        awaiting.before = flat.concatenated()

    def after(opt, args, kwargs) -> None:
        for handle in awaiting.handles:
            handle.remove()
        awaiting.handles.clear()
        done(awaiting, _step_taken(flat, awaiting))

    if inside_step:
        before(optimizer, (), {})
        awaiting.handles = [optimizer.register_step_post_hook(after)]
        return
    awaiting.handles = [
        optimizer.register_step_pre_hook(before),
        optimizer.register_step_post_hook(after),
    ]


def _step_taken(flat: _FlatParams, awaiting: AwaitingStep) -> _Taken:
    """The parameters now minus ``awaiting``'s snapshot, in place.

    The snapshot is released here, so that it is freed before the quantities run:
    one buffer of the parameters' size less at the phase's peak.
    """
    now = flat.concatenated()
    for buffer, then in zip(now, awaiting.before, strict=True):
        buffer.sub_(then)
    awaiting.before = []
    return _Taken(now, flat)


class _FlatParams:
    """Flat views ``[D_l]`` of the parameters, made once, remade when one moves.

    The optimizer updates the parameters in place, so views made once read every
    step's values; one view per parameter per snapshot would cost an operation per
    parameter tensor. They are remade when a parameter's storage changes
    (``param.data = ...``, ``model.to(...)``), and never kept for a parameter that is
    not contiguous, whose flat form is a copy. That check reads each parameter's
    address in C (``map``), with no Python bytecode per parameter tensor.

    The snapshots around ``optimizer.step()`` are :meth:`concatenated` copies, one
    buffer per device and dtype (:mod:`cockpit._flat_buffers`): one ``torch.cat``
    each, whatever the number of parameter tensors.

    Attributes:
        names: The parameters' names, in the buffers' order.
        buckets: The positions of :func:`cockpit._flat_buffers.buckets`.
        sizes: Elements of each flat view (of a rank's shard under FSDP).

    """

    def __init__(self, params: dict[str, nn.Parameter]):
        self.names = list(params)
        self._params = list(params.values())
        self._sharded = any(is_shard(p) for p in self._params)
        self._addresses: list[int] = []
        self._views: list[Tensor] = []
        self._bucketed: list[list[Tensor]] = []
        self.buckets: list[list[int]] = []
        self.sizes: list[int] = []

    def concatenated(self) -> list[Tensor]:
        """The parameters' values copied into one flat buffer ``[D_b]`` per bucket."""
        self.views()
        return [torch.cat(views) for views in self._bucketed]

    def views(self) -> list[Tensor]:
        """Parameter order: the flat parameters, sharing their storage.

        Of sharded parameters (FSDP), this rank's shards, looked up at each call:
        FSDP may move a shard to new storage when it first runs.
        """
        params = [local(p) for p in self._params] if self._sharded else self._params
        addresses = list(map(Tensor.data_ptr, params))
        if addresses == self._addresses:
            return self._views
        views = [p.detach().reshape(-1) for p in params]
        self.buckets = _flat_buffers.buckets(views)
        self.sizes = _flat_buffers.sizes(views)
        self._bucketed = [[views[i] for i in bucket] for bucket in self.buckets]
        kept = all(p.is_contiguous() for p in params)
        self._addresses, self._views = (addresses, views) if kept else ([], [])
        return views

    def split(self, buffers: list[Tensor]) -> dict[str, Tensor]:
        """Parameter name -> its view ``[D_l]`` into buffers laid out as the snapshots."""
        return _flat_buffers.FlatViews.of(self.names, buffers, self.buckets, self.sizes)


class _Taken(StepTaken):
    """:class:`StepTaken` held in flat buffers, one per bucket of parameters.

    Its norms and divisions run on the buffers, a few operations whatever the number
    of parameter tensors; the views per parameter (``delta``) are made only where a
    reader asks for them (a step split across FSDP ranks).

    Args:
        buffers: The step of every parameter of a bucket, concatenated ``[D_b]``.
        flat: The parameters' layout in the buffers.

    """

    def __init__(self, buffers: list[Tensor], flat: _FlatParams):
        self.buffers, self.flat = buffers, flat
        self.names = flat.names

    @functools.cached_property
    def delta(self) -> dict[str, Tensor]:  # type: ignore[override]
        """Parameter name -> its view ``[D_l]`` into the buffers (one split each)."""
        return self.flat.split(self.buffers)

    @functools.cached_property
    def norm_rows(self) -> Tensor:
        """``[L]``: ``||s_l||``, a reduction per run of equal segments of the buffer.

        The same bits as a norm per parameter; several buckets (dtypes, devices):
        from the views, one fused call.
        """
        if len(self.buffers) == 1:
            return _flat_buffers.segment_norms(self.buffers[0], self.flat.sizes)
        return super().norm_rows

    def divided(self, divisor: Tensor) -> dict[str, Tensor]:
        """``s_l / divisor`` per parameter: one division per buffer, then its views."""
        return self.flat.split([buffer / divisor for buffer in self.buffers])
