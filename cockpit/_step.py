"""One tracked step: set up hooks on entry, gather statistics on exit.

Entering attaches what the due quantities need (a forward hook on the loss module;
BackPACK's hooks and one ``backpack(...)`` context with every due extension, if a due
quantity needs per-sample statistics or curvature; a forward pre-hook on the model if
one replays the forward pass); exiting removes all of it, fills the due quantities' states
on the device and finalizes them into a :class:`StepResult`: the step's
:class:`~cockpit._record.TensorRecord`, records of earlier steps (alpha), and the
quantities that wait for ``optimizer.step()``. The step knows nothing of the tracker:
it receives a :class:`StepInputs` and the due quantities, and the tracker alone
submits what it returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from backpack import backpack, memory_cleanup
from backpack.core.derivatives.convnd import weight_jac_t_save_memory
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from cockpit._block_grads import BlockGradients
from cockpit._ddp_average import DDPAverage
from cockpit._input_capture import InputMoments
from cockpit._loss_capture import LossCapture
from cockpit._optimizer_step import AwaitingStep
from cockpit._pieces import Piece, StepPieces
from cockpit._record import Late, TensorRecord
from cockpit._sharded import ShardedGradients
from cockpit._step_io import StepInputs, StepResult
from cockpit.engines import backpack_engine, curvature, fill, moves
from cockpit.engines.curvature import Curvature, CurvatureRequest
from cockpit.engines.eigen_solve import Replay, solve
from cockpit.engines.func_engine import Batch, gram_parts
from cockpit.engines.hessian import ForwardCapture
from cockpit.engines.layer_stats import LayerStats
from cockpit.engines.module_func import ModuleGrads
from cockpit.quantities import Quantity
from cockpit.quantities._view import StepStates


class TrackedStep:
    """Context manager for one ``track()`` block whose step has due quantities."""

    def __init__(
        self,
        inputs: StepInputs,
        step: int,
        active: list[Quantity],
        replicated: dict[str, Any],
        pieces: StepPieces | None = None,
    ):
        self.ck = inputs
        self.step = step
        self.active = active
        self.replicated = replicated
        self.pieces = pieces
        self.result: StepResult | None = None
        self._curvature_moved = False
        self._unsolvable: dict[str, str] = {}
        self._inapplicable: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self._extension: backpack_engine.PerSampleStats | None = None
        self._seconds = 0.0

    def __enter__(self) -> TrackedStep:
        start = time.perf_counter()
        self.time = time.time()
        ck = self.ck
        engines = ck.engines
        self._losses = self._stack.enter_context(LossCapture(ck.loss_fn, ck.mean))
        self._declared = fill.declared(self.active)
        self._average = None
        ranks = None if self.pieces is None else self.pieces.ranks
        # DDP's average may stand in for .grad's gradient and the engine's mean.
        averaged = self._declared & {"grads", "sample_grads"}
        if ranks is not None and ranks.ddp is not None and averaged:
            self._average = DDPAverage(ranks.ddp, ck.params)
            self._stack.callback(self._average.attach().remove)
        grads: BlockGradients | ShardedGradients
        if ranks is not None and ranks.sharding is not None:  # FSDP's .grad shards
            grads = ShardedGradients(ck.params, self._losses)
        else:
            grads = BlockGradients(ck.params, self._losses, ck.mean, self._average)
        self._grads = self._stack.enter_context(grads)
        self._losses.on_backward = self._grads.at_loss
        self._input = None
        if "input_moments" in self._declared:
            self._input = self._stack.enter_context(InputMoments(ck.model))
        self._request = fill.sample_request(
            self.active,
            self.step,
            ck.params,
            ck.mean,
            ck.hist_samples,
            ck.generator,
        )
        if self._request is not None:
            self._request.loss_scale = self._losses.loss_scale
            # A split step's dots need the whole step's g: keep the factors.
            split = self.pieces is not None and self.pieces.split
            if split and "dots" in self._declared:
                self._request.keep_for_projection = True
        self._curvature = CurvatureRequest()
        for quantity in self.active:
            quantity.amend_curvature(self._curvature)
        needs_samples = self._request is not None or bool(self._curvature)
        if needs_samples and any(m.training for m in ck.batch_norms):
            self._curvature_moved = moves.couple(ck.model, engines)
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
        self._found = moves.HookFindings()
        self._direct: backpack_engine.DirectCapture | None = None
        if extensions:
            self._extend(extensions)
        self._module_grads = None
        if self._request is not None and engines.module:
            self._module_grads = ModuleGrads(
                engines.module_owners(ck.model),
                self._losses.batch_size,
                self._request.scale,
                ck.model,
            )
            self._stack.callback(_remove_all, self._module_grads.attach())
        self._seconds += time.perf_counter() - start
        return self

    def _extend(self, extensions: list) -> None:
        """Hook the modules the extensions need and open one ``backpack`` context.

        First-order statistics alone (no curvature extension) take ``Linear``
        layers past BackPACK (``direct``); the context is opened only if another
        hooked module needs it.
        """
        ck = self.ck
        auto = ck.engines.engine == "auto"
        found = {
            "reused": self._found.reused if auto else None,
            "failed": self._found.failed if auto else None,
        }
        direct = {}
        if self._backpack_curvature:
            modules = ck.curvature_modules
            handles = backpack_engine.attach_hooks(
                modules,
                True,
                ck.loss_fn,
                ck.sampling_seed,
                broken=self._found.broken if auto else None,
                slots=ck.hook_slots,
                **found,
            )
        else:
            assert self._extension is not None
            modules = ck.hook_targets.layers(ck.engines, ck.model)
            direct = self._extension.direct()
            self._direct = backpack_engine.DirectCapture(
                direct, self._extension.linear_layers, **found
            )
            handles = backpack_engine.attach_hooks(
                modules, direct=self._direct, slots=ck.hook_slots, **found
            )
        self._stack.callback(_remove_all, handles)
        stored = [m for m in modules if type(m) not in direct]
        if not stored:
            return
        self._stack.callback(_clean_all, stored)
        self._stack.enter_context(backpack(*extensions))
        self._stack.enter_context(weight_jac_t_save_memory(True))

    def __exit__(self, exc_type, exc, tb) -> None:
        start = time.perf_counter()
        self._stack.close()
        if exc_type is not None:
            return
        try:
            self._conclude(start)
        finally:
            if self._replay is not None:  # the shared replay's graph: free it now
                self._replay.release()

    def _conclude(self, start: float) -> None:
        """Fill the states, reduce the pieces of a split step, finalize, record."""
        states, layers = self._fill()
        groups = [(layers, states["count"])]
        if self._extension is not None:
            self._seconds += self._extension.seconds
        whole = None
        if self.pieces is not None:
            seconds = self._seconds + time.perf_counter() - start
            n = states["count"]
            average = self._average
            piece = Piece(states, layers, n, seconds, self._grads.loss_scales)
            if average is not None:
                piece.averaged, piece.autocast = average.grads, average.autocast
            whole = self.pieces.add(piece)
            if whole is None:  # more pieces of this step to come
                return
            start, self._seconds = time.perf_counter(), whole.seconds
            states, groups = whole.states, whole.groups
            for quantity in self.active:
                why = [whole.absent[s] for s in quantity.states if s in whole.absent]
                if why:
                    self._unsolvable[quantity.name] = why[0]
        view = StepStates(self.step, states)
        if whole is not None and whole.sum_across is not None:
            self._count_across(view, whole.sum_across)
        record, late = self._finalize(view)
        waiting = [q for q in self.active if q.needs_step]
        awaiting = None
        if waiting:
            awaiting = AwaitingStep(view, groups, record, waiting)
            if whole is not None:
                awaiting.gather = whole.merge_step_states
        self._seconds += time.perf_counter() - start
        self.result = StepResult(
            record=record,
            batch_size=states["count"],
            late=late,
            awaiting=awaiting,
            seconds=self._seconds,
            curvature_moved=self._curvature_moved,
            unsolvable=self._unsolvable,
            inapplicable=self._inapplicable,
        )

    def _count_across(self, view: StepStates, sum_across: Callable[[Any], Any]) -> None:
        """Histogram counts on the agreed edges, summed over the step's ranks.

        The edges come from the reduced ranges (``low``/``high``, the same on every
        rank), so each rank counts its own samples and the counts add: the second
        pass of the two-pass scheme in :mod:`cockpit._distributed`.
        """
        live = [q for q in self.active if q.name not in self._unsolvable]
        counted = {q.name: c for q in live if (c := q.count(view)) is not None}
        if counted:
            view.update({"counted": sum_across(counted)})

    def _fill(self) -> tuple[dict[str, Any], dict[str, LayerStats]]:
        """Fill the due quantities' states of this block's batch."""
        ck = self.ck
        grads = self._grads.gradients()
        losses = self._losses.per_sample_losses()
        n = losses.shape[0]
        if self._replay is not None:
            ck.func.adopt(self._replay.output, self._losses.input_shape)
        layers = self._layer_stats(n, grads)
        states = fill.backward_states(
            self._declared,
            losses=losses,
            grads=grads,
            layers=layers,
            curvature=self._curvature_results(n),
            replicated=self.replicated,
        )
        if self._input is not None:
            states.update(self._input.states())
            if "input_moments" not in states:
                self._inapplicable["input_scale"] = (
                    "the model's input has no floating-point tensor (token ids have "
                    "no scale)"
                )
        return states, layers

    def _finalize(self, states: StepStates) -> tuple[TensorRecord, list[TensorRecord]]:
        """Finalize the due quantities into the step's record (and late records)."""
        live = [
            q
            for q in self.active
            if not (self._curvature_moved and "kronecker" in q.states)
            and q.name not in self._unsolvable
            and q.name not in self._inapplicable
        ]
        eigen = self._solve(live, 1.0 if self.ck.mean else 1.0 / states.batch_size)
        live = [q for q in live if q.name not in self._unsolvable]
        if eigen:
            states.update({"eigen": eigen})
        values, late = {}, []
        for quantity in live:
            value = quantity.finalize(states)
            if isinstance(value, Late):
                late.append(
                    TensorRecord(
                        value.step,
                        self.time,
                        {quantity.name: value.value},
                        single=self.ck.single,
                    )
                )
            elif value is not None:
                values[quantity.name] = value
        return TensorRecord(self.step, self.time, values, single=self.ck.single), late

    def _solve(self, quantities: list[Quantity], mean_scale: float) -> dict[str, Any]:
        """The eigensolves the quantities ask for, on the replayed step, in order."""
        requests = {q.name: q.eigen_request() for q in quantities}
        requests = {name: r for name, r in requests.items() if r is not None}
        if not requests:
            return {}
        ck, capture = self.ck, self._replay
        assert capture is not None
        params = list(ck.params.values())

        def loss(z: Tensor) -> Tensor:
            return ck.loss_fn(z, self._losses.target)

        replay = Replay(
            loss_input=lambda: ck.func.loss_input(capture.replay()),
            loss=loss,
            gradient=lambda: capture.loss_gradient(
                lambda out: loss(ck.func.loss_input(out)), params
            ),
            params=params,
            mean_scale=mean_scale,
            generator=ck.generator,
        )
        results = {}
        for name, request in requests.items():
            try:
                results[name] = solve(request, replay)
            except (RuntimeError, NotImplementedError) as error:
                # e.g. "derivative for aten::hardsigmoid_backward is not
                # implemented": the model has no second derivative to multiply by.
                self._unsolvable[name] = (
                    "its Hessian- or GGN-vector products failed on this model "
                    f"({type(error).__name__}: {str(error).splitlines()[0]})"
                )
        return results

    def _batch(self) -> Batch:
        assert self._replay is not None
        return Batch(
            capture=self._replay,
            target=self._losses.target,
            input_shape=self._losses.input_shape,
            seed=self.ck.sampling_seed(),
        )

    def _layer_stats(self, n: int, grads: dict[str, Tensor]) -> dict[str, LayerStats]:
        """Per-sample statistics of every parameter (engine moves: ``moves``)."""
        if self._request is None:
            return {}
        if self._direct is not None:
            self._direct.finish()
        ck, request = self.ck, self._request

        def replay(names: list[str]) -> dict[str, LayerStats]:
            stats: dict[str, LayerStats] = {}
            # One _batch() per engine used: each draws a seed of the tracker's stream.
            for engine, chosen in (
                (ck.batch_replay, [n for n in names if n in ck.engines.batch]),
                (ck.func, [n for n in names if n not in ck.engines.batch]),
            ):
                if chosen:
                    stats.update(
                        engine.per_sample_stats(self._batch(), grads, request, chosen)
                    )
            return stats

        return moves.layer_stats(
            ck.model,
            ck.params,
            ck.engines,
            request,
            n,
            grads,
            self._module_grads,
            self._found,
            replay,
        )

    def _curvature_results(self, n: int) -> Curvature:
        """What the due curvature quantities need, from the curvature engine."""
        ck = self.ck
        if not self._curvature:
            return Curvature()
        if self._backpack_curvature:
            found = curvature.collect(ck.params, self._curvature)
            if not self._found.broken:
                return found
            ck.engines.move_curvature(
                f"BackPACK's second-order extensions found the chain of modules "
                f"broken at {type(self._found.broken[0]).__name__} (a functional "
                "operation or residual connection between modules)"
            )
            self._curvature_moved = True
        request = self._curvature
        gram = request.gram
        args = (
            self._batch(),
            request.diagonals,
            None if gram is None else (gram.exact, gram.mc_samples, gram.samples),
            request.probes,
            ck.generator(next(iter(ck.params.values())).device),
        )
        if ck.engines.batch:  # replay_samples applies where every sample is coupled
            covered = set(ck.engines.batch) == set(ck.params)
            found = ck.batch_replay.curvature(*args, subsample=covered)
        else:
            found = ck.func.curvature(*args)
        return Curvature(
            diagonals=found.diagonals,
            gram=gram_parts(found.columns, n, ck.mean),
            estimates=found.estimates,
        )


__all__ = ["TrackedStep"]


def _remove_all(handles: list[RemovableHandle]) -> None:
    """Remove the hooks of ``handles``, given when registered with the exit stack.

    Not a ``lambda`` reading a local ``handles``: that removes whatever the name holds
    at exit, so hooks registered under a name later reused stay installed and run at
    every later step, tracked or not.
    """
    for handle in handles:
        handle.remove()


def _clean_all(modules: list) -> None:
    """Free what BackPACK stored on ``modules`` (the same reason as :func:`_remove_all`)."""
    for module in modules:
        memory_cleanup(module)
