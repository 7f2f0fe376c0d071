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
from torch import Tensor, nn

from cockpit._loss_capture import LossCapture
from cockpit._record import Late, TensorRecord
from cockpit.engines import backpack_engine, curvature, fill
from cockpit.engines.choice import MODULE, REPLAY
from cockpit.engines.curvature import Curvature, CurvatureRequest
from cockpit.engines.eigen_solve import Replay, solve
from cockpit.engines.func_engine import Batch, gram_parts, refuse_batch_norm
from cockpit.engines.hessian import ForwardCapture
from cockpit.engines.layer_stats import LayerStats, from_per_sample
from cockpit.engines.module_func import ModuleGrads
from cockpit.exceptions import UsageError
from cockpit.quantities import Quantity
from cockpit.quantities._view import StepStates
from cockpit.states import StepTaken

if TYPE_CHECKING:
    from cockpit.tracker import Cockpit


@dataclass
class _AwaitingStep:
    """A step's record that waits for ``optimizer.step()`` to add the step taken."""

    states: StepStates
    layers: dict[str, LayerStats]
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
        engines = ck.engines
        self._grads_before = {
            name: p.grad.detach().clone()
            for name, p in ck.params.items()
            if p.grad is not None
        }
        self._losses = self._stack.enter_context(LossCapture(ck.loss_fn, ck.mean))
        self._request = fill.sample_request(
            self.active,
            self.step,
            ck.params,
            ck.mean,
            ck.hist_samples,
            ck.generator,
        )
        self._curvature = CurvatureRequest()
        for quantity in self.active:
            quantity.amend_curvature(self._curvature)
        needs_samples = self._request is not None or bool(self._curvature)
        if needs_samples and any(m.training for m in ck.batch_norms):
            refuse_batch_norm(ck.model)
        self._backpack_curvature = (
            bool(self._curvature) and engines.curvature == "backpack"
        )
        # In auto mode the BackPACK part may move to torch.func at this step.
        func = (self._request is not None or bool(self._curvature)) and (
            engines.engine == "auto"
            or bool(engines.func)
            or not self._backpack_curvature
        )
        self._replay = None
        if func or any(q.needs_replay for q in self.active):
            self._replay = self._stack.enter_context(ForwardCapture(ck.model))
        extensions = []
        if self._request is not None and engines.backpack:
            self._extension = backpack_engine.PerSampleStats(self._request)
            extensions.append(self._extension)
        if self._backpack_curvature:
            extensions += self._curvature.extensions(self._losses.batch_size)
        self._reused: set[int] = set()
        self._failed: dict[int, str] = {}
        self._broken: list[nn.Module] = []
        if extensions:
            self._extend(extensions)
        self._module_grads = None
        if self._request is not None and engines.module:
            self._module_grads = ModuleGrads(
                engines.module_owners(ck.model), self._losses.batch_size, ck.mean
            )
            handles = self._module_grads.attach()
            self._stack.callback(lambda: [h.remove() for h in handles])
        self._seconds += time.perf_counter() - start
        return self

    def _extend(self, extensions: list) -> None:
        """Hook the modules the extensions need and open one ``backpack`` context."""
        ck = self.ck
        auto = ck.engines.engine == "auto"
        found = {
            "reused": self._reused if auto else None,
            "failed": self._failed if auto else None,
        }
        if self._backpack_curvature:
            modules = ck.curvature_modules
            handles = backpack_engine.attach_hooks(
                modules,
                True,
                ck.loss_fn,
                ck.sampling_seed,
                broken=self._broken if auto else None,
                **found,
            )
        else:
            modules = ck.engines.layers(ck.model)
            handles = backpack_engine.attach_hooks(modules, **found)
        self._stack.callback(lambda: [h.remove() for h in handles])
        self._stack.callback(lambda: [memory_cleanup(m) for m in modules])
        self._stack.enter_context(backpack(*extensions))
        self._stack.enter_context(weight_jac_t_save_memory(True))

    def __exit__(self, exc_type, exc, tb) -> None:
        start = time.perf_counter()
        self._stack.close()
        if exc_type is not None:
            return
        states, layers, record = self._finish()
        awaiting = [q for q in self.active if q.needs_step]
        if self._extension is not None:
            self._seconds += self._extension.seconds
        self._seconds += time.perf_counter() - start
        if awaiting:
            self.ck.await_step(
                _AwaitingStep(states, layers, record, awaiting), self._seconds
            )
        else:
            record.values["tracker_time"] = self._seconds
            self.ck.submit(record)

    def _finish(self) -> tuple[StepStates, dict[str, LayerStats], TensorRecord]:
        """Fill the due quantities' states and finalize them into a record."""
        ck = self.ck
        losses = self._losses.per_sample_losses()
        n = losses.shape[0]
        grads = self._batch_gradients(n)
        layers = self._layer_stats(n, grads)
        replicated = {
            "params": ck.params,
            "initial": ck.initial,
            "lr": ck.current_plain_sgd_lr(),
            "mean_reduction": ck.mean,
        }
        states = StepStates(
            self.step,
            fill.backward_states(
                fill.declared(self.active),
                losses=losses,
                grads=grads,
                layers=layers,
                curvature=self._curvature_results(n),
                replicated=replicated,
            ),
        )
        live = [q for q in self.active if q.name in ck.quantities]  # some stop here
        eigen = self._solve(live, 1.0 if ck.mean else 1.0 / n)
        if eigen:
            states.update({"eigen": eigen})
        values, late = {}, []
        for quantity in live:
            value = quantity.finalize(states)
            if isinstance(value, Late):
                late.append(
                    TensorRecord(value.step, self.time, {quantity.name: value.value})
                )
            elif value is not None:
                values[quantity.name] = value
        values.update(ck.bookkeeping(self.step, n))
        for record in late:
            ck.submit(record)
        return states, layers, TensorRecord(self.step, self.time, values)

    def _solve(self, quantities: list[Quantity], mean_scale: float) -> dict[str, Any]:
        """The eigensolves the quantities ask for, on the replayed step, in order."""
        requests = {q.name: q.eigen_request() for q in quantities}
        requests = {name: r for name, r in requests.items() if r is not None}
        if not requests:
            return {}
        ck, capture = self.ck, self._replay
        assert capture is not None
        replay = Replay(
            loss_input=lambda: ck.func.loss_input(capture.replay()),
            loss=lambda z: ck.loss_fn(z, self._losses.target),
            params=list(ck.params.values()),
            mean_scale=mean_scale,
            generator=ck.generator,
        )
        return {name: solve(request, replay) for name, request in requests.items()}

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

    def _batch(self) -> Batch:
        assert self._replay is not None
        return Batch(
            capture=self._replay,
            target=self._losses.target,
            input_shape=self._losses.input_shape,
            seed=self.ck.sampling_seed(),
        )

    def _layer_stats(self, n: int, grads: dict[str, Tensor]) -> dict[str, LayerStats]:
        """Per-sample statistics of every parameter, from its engine.

        Parameters found here to need another engine get this step's statistics
        from the replay and move for the next steps: to torch.func per module if
        their BackPACK layer ran twice or BackPACK failed on it; to the replay if
        their module's calls have no batch dimension or their per-sample gradients
        do not add up to ``.grad``.
        """
        if self._request is None:
            return {}
        ck, engines = self.ck, self.ck.engines
        found = backpack_engine.collect(ck.params)
        replay = set(engines.replay)
        if self._module_grads is not None:
            found.update(self._module_grads.collect(ck.params, self._request))
            failed = sorted(self._module_grads.failed)
            errors = "; ".join(
                f"{k}: {v}" for k, v in self._module_grads.errors.items()
            )
            why = (
                f"torch.func could not differentiate its module per sample ({errors})"
                if errors
                else "its module's output has no batch dimension"
            )
            engines.move(failed, REPLAY, why)
            replay.update(failed)
        if self._reused:
            reused = self._backpack_params(self._reused)
            engines.move(reused, MODULE, "its module runs more than once per step")
            replay.update(reused)
        for module_id, error in self._failed.items():
            broken = self._backpack_params({module_id})
            engines.move(broken, MODULE, f"BackPACK failed on its module ({error})")
            replay.update(broken)
        # A module called without the batch dimension (an embedding of arange(T))
        # gives BackPACK T "samples": its statistics have the wrong length.
        unbatched = [
            name
            for name, stats in found.items()
            if stats.sq_norms.shape[0] != n and name not in replay
        ]
        engines.move(unbatched, REPLAY, "its module's input has no batch dimension")
        replay.update(unbatched)
        if not ck.verified:
            ck.verified = True
            replay.update(self._verify(found, grads, replay))
        for name in replay:
            found.pop(name, None)
        if replay:
            names = [name for name in ck.params if name in replay]
            found.update(
                ck.func.per_sample_stats(self._batch(), grads, self._request, names)
            )
        for name, p in ck.params.items():
            if name not in found:  # not reached by this backward: zero gradients
                zeros = torch.zeros(n, *p.shape, device=p.device, dtype=p.dtype)
                found[name] = from_per_sample(zeros, p, self._request)
        return {name: found[name] for name in ck.params}

    def _backpack_params(self, module_ids: set[int]) -> list[str]:
        """The BackPACK engine's parameters owned by the modules with these ids."""
        ck = self.ck
        return [
            name
            for module in ck.engines.layers(ck.model)
            if id(module) in module_ids
            for name in ck.engines.backpack
            if any(p is ck.params[name] for p in module.parameters(False))
        ]

    def _verify(
        self, found: dict[str, LayerStats], grads: dict[str, Tensor], replay: set[str]
    ) -> list[str]:
        """Check once that per-sample gradients from hooks add up to the gradient.

        A parameter used outside its modules (``F.linear(h, embedding.weight)``)
        gets per-sample gradients from the hooked calls alone, whose mean is not the
        gradient in ``.grad``. One host synchronization, at the first step with
        per-sample statistics. Returns the parameters moved to the replay.
        """
        engines = self.ck.engines
        names = [n for n in self.ck.params if n not in replay]
        if not names:
            return []
        checks = []
        for name in names:
            grad = grads[name]
            if name in found:
                mean = found[name].grad
                error = torch.linalg.vector_norm(mean - grad)
                scale = torch.linalg.vector_norm(grad) + torch.linalg.vector_norm(mean)
                checks.append(error > 1e-3 * scale)
            else:
                checks.append(grad.abs().max() > 0)
        flags = torch.stack(checks).tolist()
        wrong = [n for n, bad in zip(names, flags, strict=True) if bad]
        if not wrong:
            return []
        why = (
            "its per-sample gradients from its modules' hooks do not add up to its "
            "gradient in .grad (it is used outside its modules, e.g. "
            "F.linear(h, embedding.weight))"
        )
        if engines.engine == "backpack":
            raise UsageError(
                f"Parameter(s) {', '.join(wrong)}: {why}, so the BackPACK engine's "
                "statistics of them would be wrong. Use engine='auto' or "
                "engine='torch.func'."
            )
        engines.move(wrong, REPLAY, why)
        return wrong

    def _curvature_results(self, n: int) -> Curvature:
        """What the due curvature quantities need, from the curvature engine."""
        ck = self.ck
        if not self._curvature:
            return Curvature()
        if self._backpack_curvature:
            found = curvature.collect(ck.params, self._curvature)
            if not self._broken:
                return found
            ck.engines.move_curvature(
                f"BackPACK's second-order extensions found the chain of modules "
                f"broken at {type(self._broken[0]).__name__} (a functional operation "
                "or residual connection between modules)"
            )
            ck.stop_kronecker()
        request = self._curvature
        gram = request.gram
        found = ck.func.curvature(
            self._batch(),
            request.diagonals,
            None if gram is None else (gram.exact, gram.mc_samples, gram.samples),
            request.probes,
            ck.generator(next(iter(ck.params.values())).device),
        )
        return Curvature(
            diagonals=found.diagonals,
            gram=gram_parts(found.columns, n, ck.mean),
            estimates=found.estimates,
        )


def install_step_hooks(
    optimizer: torch.optim.Optimizer,
    params: dict[str, torch.nn.Parameter],
    awaiting: _AwaitingStep,
    done: Callable[[_AwaitingStep, StepTaken | None], None],
) -> None:
    """One-shot hooks around the next ``optimizer.step()``: snapshot, then diff."""
    names = list(params)

    def flat() -> list[Tensor]:
        return [p.detach().reshape(-1) for p in params.values()]

    def before(opt, args, kwargs) -> None:
        # One fused call per list (torch._foreach_*): many small parameters cost
        # launches, not arithmetic.
        awaiting.before = dict(zip(names, torch._foreach_mul(flat(), 1.0), strict=True))

    def after(opt, args, kwargs) -> None:
        for handle in awaiting.handles:
            handle.remove()
        awaiting.handles.clear()
        before = list(awaiting.before.values())
        delta = dict(zip(names, torch._foreach_sub(flat(), before), strict=True))
        done(awaiting, StepTaken(delta=delta))

    awaiting.handles = [
        optimizer.register_step_pre_hook(before),
        optimizer.register_step_post_hook(after),
    ]


__all__ = ["TrackedStep", "install_step_hooks"]
