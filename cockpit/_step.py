"""One tracked step: set up hooks on entry, gather statistics on exit.

Entering attaches what the due quantities need (a forward hook on the loss module;
BackPACK's hooks and one ``backpack(...)`` context with every due extension, if a due
quantity needs per-sample statistics or curvature; a forward pre-hook on the model if
one replays the forward pass); exiting removes all of it, computes the quantities on
the device and hands a :class:`~cockpit._record.TensorRecord` to the writer, right
away or once ``optimizer.step()`` has run if a quantity needs the step.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from backpack import backpack, memory_cleanup
from backpack.core.derivatives.convnd import weight_jac_t_save_memory
from torch import Tensor

from cockpit._loss_capture import LossCapture
from cockpit._record import TensorRecord
from cockpit.engines import backpack_engine, curvature
from cockpit.engines.curvature import CurvatureRequest
from cockpit.engines.hessian import ForwardCapture
from cockpit.engines.layer_stats import LayerStats, SampleRequest, from_per_sample
from cockpit.quantities import Quantity
from cockpit.quantities._context import StepContext, StepTaken

if TYPE_CHECKING:
    from cockpit.tracker import Cockpit


@dataclass
class _AwaitingStep:
    """A step's record that waits for ``optimizer.step()`` to add the step taken."""

    ctx: StepContext
    record: TensorRecord
    quantities: list[Quantity]
    before: dict[str, Tensor] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)


class TrackedStep:
    """Context manager for one ``track()`` block whose step has due quantities."""

    def __init__(self, cockpit: Cockpit, step: int, active: list[Quantity]):
        self.ck = cockpit
        self.step = step
        self.active = active
        self._stack = contextlib.ExitStack()
        self._extension: backpack_engine.PerSampleStats | None = None
        self._seconds = 0.0

    def __enter__(self) -> TrackedStep:
        start = time.perf_counter()
        self.time = time.time()
        ck = self.ck
        self._grads_before = {
            name: p.grad.detach().clone()
            for name, p in ck.params.items()
            if p.grad is not None
        }
        self._losses = self._stack.enter_context(LossCapture(ck.loss_fn, ck.mean))
        self._replay = None
        if any(q.needs_replay for q in self.active):
            self._replay = self._stack.enter_context(ForwardCapture(ck.model))
        extensions = []
        if any(q.needs_per_sample for q in self.active):
            self._extension = backpack_engine.PerSampleStats(self._request())
            extensions.append(self._extension)
        self._curvature = CurvatureRequest()
        for quantity in self.active:
            quantity.amend_curvature(self._curvature)
        if self._curvature:
            extensions += self._curvature.extensions(self._losses.batch_size)
        if extensions:
            self._extend(extensions)
        self._seconds += time.perf_counter() - start
        return self

    def _extend(self, extensions: list) -> None:
        """Hook the modules the extensions need and open one ``backpack`` context."""
        ck = self.ck
        if self._curvature:
            modules = ck.curvature_modules
            handles = backpack_engine.attach_hooks(
                modules, True, ck.loss_fn, ck.sampling_seed
            )
        else:
            modules = ck.layers
            handles = backpack_engine.attach_hooks(modules)
        self._stack.callback(lambda: [h.remove() for h in handles])
        self._stack.callback(lambda: [memory_cleanup(m) for m in modules])
        self._stack.enter_context(backpack(*extensions))
        self._stack.enter_context(weight_jac_t_save_memory(True))

    def _request(self) -> SampleRequest:
        ck = self.ck
        request = SampleRequest(
            mean_reduction=ck.mean,
            total_params=sum(p.numel() for p in ck.params.values()),
            generator=ck.generator,
        )
        if any(q.needs_histogram for q in self.active):
            request.hist_budget = ck.hist_samples
        for quantity in self.active:
            quantity.amend(self.step, request)
        return request

    def __exit__(self, exc_type, exc, tb) -> None:
        start = time.perf_counter()
        self._stack.close()
        if exc_type is not None:
            return
        ctx, record = self._finish()
        awaiting = [q for q in self.active if q.needs_step]
        if self._extension is not None:
            self._seconds += self._extension.seconds
        self._seconds += time.perf_counter() - start
        if awaiting:
            self.ck.await_step(_AwaitingStep(ctx, record, awaiting), self._seconds)
        else:
            record.values["tracker_time"] = self._seconds
            self.ck.submit(record)

    def _finish(self) -> tuple[StepContext, TensorRecord]:
        ck = self.ck
        losses = self._losses.per_sample_losses()
        ctx = StepContext(
            step=self.step,
            losses=losses,
            grads=self._batch_gradients(losses.shape[0]),
            params=ck.params,
            initial=ck.initial,
            layers=self._layer_stats(losses.shape[0]),
            plain_sgd_lr=ck.current_plain_sgd_lr(),
            mean_reduction=ck.mean,
            curvature=curvature.collect(ck.params, self._curvature),
            replay=self._replay,
            loss_fn=ck.loss_fn,
            target=self._losses.target,
            generator=ck.generator,
        )
        values = {}
        for quantity in self.active:
            value = quantity.compute(ctx)
            if value is not None:
                values[quantity.name] = value
        values.update(ck.bookkeeping(self.step, losses.shape[0]))
        for step, key, value in ctx.late:
            ck.submit(TensorRecord(step, self.time, {key: value}))
        return ctx, TensorRecord(self.step, self.time, values)

    def _batch_gradients(self, n: int) -> dict[str, Tensor]:
        """``g_l`` of the mean loss: what this block's backward added to ``.grad``."""
        params = self.ck.params
        scale = 1.0 if self.ck.mean else 1.0 / n
        grads = {}
        for name, p in params.items():
            if p.grad is None:
                grads[name] = torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
                continue
            grad = p.grad.detach()
            if name in self._grads_before:
                grad = grad - self._grads_before[name]
            grads[name] = grad.reshape(-1) * scale
        return grads

    def _layer_stats(self, n: int) -> dict[str, LayerStats]:
        if self._extension is None:
            return {}
        found = backpack_engine.collect(self.ck.params)
        for name, p in self.ck.params.items():
            if name not in found:  # not reached by this backward: zero gradients
                zeros = torch.zeros(n, *p.shape, device=p.device, dtype=p.dtype)
                found[name] = from_per_sample(zeros, p, self._extension.request)
        return {name: found[name] for name in self.ck.params}


def install_step_hooks(
    optimizer: torch.optim.Optimizer,
    params: dict[str, torch.nn.Parameter],
    awaiting: _AwaitingStep,
    done: Callable[[_AwaitingStep, StepTaken | None], None],
) -> None:
    """One-shot hooks around the next ``optimizer.step()``: snapshot, then diff."""

    def before(opt, args, kwargs) -> None:
        awaiting.before = {n: p.detach().reshape(-1).clone() for n, p in params.items()}

    def after(opt, args, kwargs) -> None:
        for handle in awaiting.handles:
            handle.remove()
        awaiting.handles.clear()
        delta = {
            n: p.detach().reshape(-1) - awaiting.before[n] for n, p in params.items()
        }
        done(awaiting, StepTaken(delta=delta))

    awaiting.handles = [
        optimizer.register_step_pre_hook(before),
        optimizer.register_step_post_hook(after),
    ]


__all__ = ["TrackedStep", "install_step_hooks"]
