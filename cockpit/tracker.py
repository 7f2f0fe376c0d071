"""The tracker: :class:`Cockpit` and :func:`track`.

See DESIGN.md, "The training-loop contract". A minimal loop::

    ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir="runs", preset="economy")
    for inputs, labels in loader:
        optimizer.zero_grad()
        with ck.track():
            loss = loss_fn(model(inputs), labels)
            loss.backward()
        optimizer.step()
    ck.close()

This module stays one file above the usual ~300 lines on purpose: :class:`Cockpit` is
the whole public training-loop API, and its docstring alone documents every argument.
The step itself (:mod:`cockpit._step`), the records waiting for ``optimizer.step()``
(:mod:`cockpit._optimizer_step`), ``meta.json`` (:mod:`cockpit._meta`) and the open
runs behind :func:`cockpit.track` (:mod:`cockpit._open_runs`) live elsewhere.
"""

from __future__ import annotations

import contextlib
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cockpit import _flat_buffers, _scratch, _setup, presets
from cockpit._budget import BudgetControl
from cockpit._budget_notice import over_budget_line
from cockpit._distributed import SilentWriter
from cockpit._meta import new_run_name, run_meta
from cockpit._open_runs import register, unregister
from cockpit._optimizer_step import OptimizerWatch
from cockpit._pieces import StepPieces, split_absence
from cockpit._record import NARROW_FLOATS, TensorRecord
from cockpit._sharded import is_shard
from cockpit._step import TrackedStep
from cockpit._step_io import StepInputs, StepResult
from cockpit.catalog import KRONECKER, PLAIN_SGD, keys_with
from cockpit.diagnosis import Alert
from cockpit.engines.batch_replay import BatchReplay
from cockpit.engines.choice import LOG, assign, choose_curvature
from cockpit.engines.curvature import leaf_modules
from cockpit.engines.func_engine import FuncEngine, batch_norm_in_training
from cockpit.exceptions import (
    AbsentQuantityWarning,
    CockpitWarning,
    ConfigurationError,
    NonFiniteWarning,
    UsageError,
)
from cockpit.logs import RunWriter
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.logs.tensorboard import TensorBoardWriter
from cockpit.quantities import REGISTRY

#: Default histogram sample: per-sample gradient elements drawn per step. With the
#: histograms' 64 bins that is about 1,000 samples per bin (a bin's count has a
#: relative standard error near 3 %); 2**20 cost the digits MLP's economy step 11 ms
#: more CPU time (``benchmarks/fixed_cost.py --configs economy economy/hist64k``).
HIST_SAMPLES = 2**16

#: Keys the tracker logs besides the quantities (see ``Cockpit.bookkeeping``).
BOOKKEEPING = frozenset(presets.BOOKKEEPING)

#: Quantities only BackPACK can compute, and why they are absent otherwise.
KRONECKER_ONLY = dict.fromkeys(keys_with(KRONECKER), KRONECKER.reason)

_OPEN: weakref.WeakSet[Cockpit] = weakref.WeakSet()
_CURRENT: weakref.ReferenceType[Cockpit] | None = None


class Cockpit:
    """Tracks a model's training and streams the statistics to ``logdir/run_name``.

    Args:
        model: The model being trained.
        loss_fn: The loss module (``reduction`` ``"mean"`` or ``"sum"``).
        optimizer: The optimizer; the tracker reads the step it takes.
        logdir: Directory holding one sub-directory per run.
        run_name: The run's directory name; default: time stamp and host.
        preset: ``"economy"``, ``"business"``, ``"full"``, or ``None``. Given
            neither a preset nor quantities, the tracker follows the economy
            preset's quantities under ``budget`` (default 0.05); pass
            ``preset="economy"`` to track all of them at every step.
        quantities: Per log key a schedule (``every(k)``, int k, callable), a
            configured quantity instance, or ``None`` to drop it; or a list of keys.
        budget: The tracker's share of the wall time to stay at or under, in
            (0, 1): each quantity's interval (every 1 to 50 steps) is planned from
            its measured cost, cheapest and most informative first, and re-planned
            as costs change (:mod:`cockpit._budget`). Quantities given a schedule
            of their own in ``quantities`` keep it. The plan goes to ``meta.json``
            (``budget``), the measured share to the log (``overhead_share``).
        hist_samples: Per-sample gradient elements sampled per step for histograms
            (default :data:`HIST_SAMPLES`); ``0`` counts all of them exactly (slow:
            see ``grad_hist_1d``).
        seed: Seed of the tracker's own random generator (histogram sampling); the
            training's random stream is never touched.
        config: Anything JSON-able to store in ``meta.json`` (hyperparameters).
        tensorboard: Also write every record as TensorBoard event files into
            ``<run_dir>/tensorboard/`` (``tensorboard --logdir runs``), from the
            writer thread, with the tags of ``cockpit export``. Needs the
            ``tensorboard`` package.
        engine: Where per-sample gradients and curvature come from: ``"auto"``
            (BackPACK for the layers it supports, torch.func for the rest; see
            :mod:`cockpit.engines.choice`), ``"backpack"`` or ``"torch.func"``.
            The choice is logged once as a line of the ``cockpit`` logger and
            stored in ``meta.json``.
        loss_input: For the torch.func engine: what the loss module gets from the
            model's output, ``fn(output) -> tensor`` with the batch dimension first
            (e.g. ``lambda out: out.transpose(1, 2)`` or ``lambda out:
            out.logits``); default: the output itself.

        on_alert: Called with each new ``cockpit.diagnosis.Alert`` as the log's
            records raise it, on the writer thread (never blocking training; what it
            raises becomes a warning). Set a flag there to stop the loop early.
        grad_scaler: The ``torch.amp.GradScaler`` whose ``scale(loss)`` is
            backpropagated, for float16 mixed precision. The statistics are of the
            unscaled gradients (the scale is read off the backward pass, like any
            loss scale), curvature comes from torch.func (BackPACK's second-order
            extensions start at the loss module), and ``meta.json`` says a scaler
            was used, so
            a step the scaler skipped for non-finite gradients is logged with them
            (``nonfinite``) but is not diagnosed as a broken run.
        accumulation_steps: ``track()`` blocks per optimizer step (gradient
            accumulation over micro-batches, on each rank). The step's record
            describes all of them; the loss may be scaled (``loss / K``) or not:
            the scale is read off the backward pass. See :mod:`cockpit._pieces`.
        process_group: Under ``torch.distributed``, the ranks that share each step
            (default: the DDP model's group, else the world). A
            ``DistributedDataParallel`` model is tracked through its ``module``;
            states are reduced across ranks and rank 0 alone writes the log. See
            :mod:`cockpit._distributed`. A ``fully_shard`` (FSDP2) model is
            tracked on its device mesh's group, for the quantities that need only
            reductions (by default all of them, at every step); the others are
            absent with the reason (:mod:`cockpit._sharded`).
        replay_samples: For models whose samples are coupled (BatchNorm in
            training mode), the batch replay's per-sample gradients, and the GGN
            diagonals' columns (a second, independent draw), of a seeded uniform
            random subsample of this many samples per ``track()`` block instead
            of all N, with the sums over samples scaled by N/M (unbiased
            estimates); ``None``: every sample. Logged in ``meta.json`` and the
            engine line. See :mod:`cockpit.engines.batch_replay`.

    Raises:
        ConfigurationError: If an argument cannot work, e.g. ``tensorboard=True``
            without the ``tensorboard`` package; the message says how to fix it.

    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        logdir: str | Path = "runs",
        run_name: str | None = None,
        preset: str | None = None,
        quantities: Mapping[str, Any] | Iterable[str] | None = None,
        budget: float | None = None,
        hist_samples: int = HIST_SAMPLES,
        seed: int = 0,
        config: Mapping[str, Any] | None = None,
        tensorboard: bool = False,
        engine: str = "auto",
        loss_input: Callable[[Any], torch.Tensor] | None = None,
        on_alert: Callable[[Alert], object] | None = None,
        grad_scaler: Any = None,
        accumulation_steps: int = 1,
        process_group: Any = None,
        replay_samples: int | None = None,
    ):
        model, self.ranks = _setup.distributed(model, process_group)
        if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ConfigurationError(
                "accumulation_steps must be an int >= 1 (track() blocks per "
                f"optimizer.step()), got {accumulation_steps!r}."
            )
        self.model = model
        self.loss_fn = loss_fn
        self.mean = _setup.check_loss(loss_fn)
        self.params = _setup.trainable_parameters(model)
        self.optimizer = optimizer
        _setup.check_grad_scaler(grad_scaler)
        if not isinstance(hist_samples, int) or hist_samples < 0:
            raise ConfigurationError(
                f"hist_samples must be an int >= 0 (0 = exact), got {hist_samples!r}."
            )
        self.hist_samples = hist_samples
        _setup.check_replay_samples(replay_samples)
        self.replay_samples = replay_samples
        sharding = None if self.ranks is None else self.ranks.sharding
        chosen = preset is not None or quantities is not None
        preset, budget = _setup.default_tracking(
            preset,
            quantities,
            budget,
            1 if self.ranks is None else self.ranks.size,
            sharded=sharding is not None,
        )
        self.quantities = _setup.resolve_quantities(preset, quantities)
        self._budget: BudgetControl | None = None
        self.absent = self._drop_undefined()
        self.pieces = StepPieces(accumulation_steps, self.mean, self.ranks)
        if self.pieces.split:
            self._drop_unsplittable(sharding is not None, warn=chosen)
        self._choose_engines(
            engine,
            self.absent,
            scaled=grad_scaler is not None and grad_scaler.is_enabled(),
        )
        if budget is not None:
            self._budget = _setup.budget_control(self.quantities, quantities, budget)
        self.func = FuncEngine(model, self.params, loss_fn, self.mean, loss_input)
        self.batch_norms = [
            m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        self.initial = {}
        if any("initial" in q.states for q in self.quantities.values()):
            self.initial = _initial(self.params)
        self._seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._inputs = StepInputs(
            model=model,
            params=self.params,
            loss_fn=loss_fn,
            mean=self.mean,
            engines=self.engines,
            func=self.func,
            batch_replay=BatchReplay(self.func, replay_samples),
            curvature_modules=self.curvature_modules,
            batch_norms=self.batch_norms,
            hist_samples=hist_samples,
            single=all(p.dtype in NARROW_FLOATS for p in self.params.values()),
            generator=self.generator,
            sampling_seed=self.sampling_seed,
        )
        name = run_name or new_run_name()
        run_dir = Path(logdir) / name
        meta = run_meta(
            name=name,
            model=model,
            params=self.params,
            loss=(loss_fn, self.mean),
            optimizer=optimizer,
            preset=preset,
            quantities=self.quantities,
            absent=self.absent,
            engines=self.engines.as_meta(),
            hist_samples=hist_samples,
            config=config,
            grad_scaler=grad_scaler is not None,
            budget=None if self._budget is None else self._budget.as_meta(),
        )
        meta["world_size"] = 1 if self.ranks is None else self.ranks.size
        if self.ranks is not None and sharding is not None:
            meta["sharding"] = sharding.as_meta(self.ranks, self.params)
        meta["accumulation_steps"] = accumulation_steps
        meta["replay_samples"] = replay_samples
        self.writer: RunWriter | SilentWriter = SilentWriter(run_dir)
        if self.ranks is None or self.ranks.writes:  # the others create nothing
            mirror = TensorBoardWriter(run_dir / "tensorboard") if tensorboard else None
            self.writer = RunWriter(run_dir, meta, mirror=mirror, on_alert=on_alert)
        self._global_batch_size: int | None = None
        self._batch_size: int | None = None  # N of the last tracked step
        self._said_over_budget = False
        self.step = 0
        self._last_entry: float | None = None
        self._last_cpu = 0.0  # the training thread's CPU seconds at that entry
        self._step_time: float | None = None
        self._writer_seconds = 0.0
        # The tracker's own seconds in the step: track()'s entry on an untracked
        # one, tracker_time on a tracked one (the budget's floor of its price).
        self._own_seconds = 0.0
        self._last_tracked: frozenset[str] = frozenset()
        self._in_track = False
        self._closed = False
        self._blocks = 0
        self._active: list[Any] = []
        self._watch = OptimizerWatch(optimizer, self.params, self.submit)
        if isinstance(self.initial, _flat_buffers.FlatViews):
            self.initial.live = self._watch.flat.views
        register(self)

    def _choose_engines(
        self, engine: str, absent: dict[str, str], scaled: bool
    ) -> None:
        """Assign parameters and curvature to engines; drop what neither can do.

        A scaled loss (``scaled``: a ``GradScaler``) multiplies the loss module's
        output before ``backward()``; BackPACK's second-order extensions need the
        backward to start at the loss module, so curvature then comes from
        torch.func, which differentiates the unscaled loss.
        """
        needing = [q.name for q in self.quantities.values() if q.needs_per_sample]
        needs = _setup.curvature_needs(self.quantities)
        self.engines = assign(self.model, self.params, engine, needing)
        self.engines.replay_samples = self.replay_samples
        choose_curvature(self.engines, self.model, self.loss_fn, needs)
        if scaled and needs and self.engines.curvature == "backpack":
            if engine == "backpack":
                raise ConfigurationError(
                    "engine='backpack' cannot compute curvature of a loss scaled by a "
                    "GradScaler: BackPACK's second-order extensions start the backward "
                    "pass at the loss module. Use engine='auto', or leave the "
                    "curvature quantities out."
                )
            self.engines.curvature = "torch.func"
            self.engines.curvature_why = (
                "the loss is scaled by a GradScaler after the loss module"
            )
        coupled = batch_norm_in_training(self.model)
        if coupled and engine != "backpack" and (needing or needs):
            self.engines.couple(coupled, announce=False)
        self.curvature_modules = []
        if needs and self.engines.curvature == "backpack":
            self.curvature_modules = [m for _, m in leaf_modules(self.model)]
        elif needs:
            for name in [n for n in needs if n in KRONECKER_ONLY]:
                self.drop(name, absent, KRONECKER_ONLY[name], stacklevel=4)
        if needing or needs:
            LOG.info(self.engines.describe())
        self.engines.verified = engine == "torch.func" or not needing

    def drop(
        self,
        name: str,
        absent: dict[str, str],
        why: str,
        stacklevel: int,
        warn: bool = True,
    ) -> None:
        """Stop tracking ``name``, with a warning and the reason in ``meta.json``.

        ``warn=False``: a quantity the user did not ask for (the default's), noted
        in ``meta.json`` only.
        """
        absent[name] = why
        self.quantities.pop(name, None)
        if self._budget is not None:
            self._budget.forget(name)
        if not warn:
            return
        warnings.warn(
            f"'{name}' is not tracked: {why}.",
            AbsentQuantityWarning,
            stacklevel=stacklevel,
        )

    def _drop_unsplittable(self, sharded: bool, warn: bool) -> None:
        """Drop the quantities split steps cannot have (:func:`split_absence`).

        ``warn=False`` (the user chose no quantity): one line per reason in the
        ``cockpit`` logger instead of a warning per quantity.
        """
        dropped: dict[str, list[str]] = {}
        for name, quantity in list(self.quantities.items()):
            why = split_absence(quantity, sharded=sharded)
            if why is not None:
                self.drop(name, self.absent, why, stacklevel=4, warn=warn)
                dropped.setdefault(why, []).append(name)
        if not warn:
            for why, names in dropped.items():
                LOG.info("cockpit: %s not tracked: %s.", ", ".join(names), why)

    def stop_kronecker(self) -> None:
        """Stop quantities only BackPACK computes, once curvature moved to torch.func."""
        for name, why in KRONECKER_ONLY.items():
            if name in self.quantities:
                self.drop(name, self.absent, why, stacklevel=2)
                self.engines.changed = True  # meta.json's absent is written with them

    def _record_moves(self) -> None:
        """Write engine moves, stopped quantities and a new plan into ``meta.json``."""
        if self.engines.changed:
            self.engines.changed = False
            self.writer.update_meta(engines=self.engines.as_meta(), absent=self.absent)
        if self._budget is not None and self._budget.changed:
            self._budget.changed = False
            self.writer.update_meta(budget=self._budget.as_meta())

    @property
    def run_dir(self) -> Path:
        """Where this run's log is written."""
        return self.writer.run_dir

    def _drop_undefined(self) -> dict[str, str]:
        lr, why_not = _setup.plain_sgd_lr(self.optimizer)
        self._plain_sgd = lr is not None
        absent = {}
        for name in list(self.quantities):
            if name in keys_with(PLAIN_SGD) and not self._plain_sgd:
                why = f"{PLAIN_SGD.reason}, but {why_not}"
                self.drop(name, absent, why, stacklevel=4)
        return absent

    def generator(self, device: torch.device) -> torch.Generator:
        """The tracker's own random generator on ``device``."""
        if device not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[device] = gen
        return self._generators[device]

    def sampling_seed(self) -> int:
        """A seed for Monte-Carlo curvature, drawn from the tracker's CPU generator."""
        draw = torch.randint(2**62, (1,), generator=self.generator(torch.device("cpu")))
        return int(draw)

    def current_plain_sgd_lr(self) -> float | None:
        """The SGD learning rate now (schedulers change it), or None if not plain SGD."""
        return self.optimizer.param_groups[0]["lr"] if self._plain_sgd else None

    def bookkeeping(self, step: int, batch_size: int) -> dict[str, Any]:
        """Values logged at every tracked step besides the quantities."""
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        values: dict[str, Any] = {
            "batch_size": batch_size,
            "lr": {
                TOTAL: lrs[0],
                PER_LAYER: {f"group{i}": lr for i, lr in enumerate(lrs)},
            },
        }
        if self._step_time is not None:
            values["step_time"] = self._step_time
        if self._budget is not None and self._budget.run_share is not None:
            values["overhead_share"] = self._budget.run_share
        return values

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Track the forward and backward pass inside the block as one step.

        With ``accumulation_steps=K``, K blocks make one step: the first starts it,
        the K-th reduces the blocks' states and writes the step's record.
        """
        entered = time.perf_counter()
        self._check_usable()
        block = self._blocks % self.pieces.accumulation_steps
        if block == 0:
            self._start_step()
        else:
            self._watch.check_continuation(block, self.pieces.accumulation_steps)
        self._blocks += 1
        step = self.step - 1
        self._in_track = True
        try:
            if not self._active:
                # The budget counts track()'s entry (choosing what is due, its
                # own bookkeeping) on a plain step as overhead.
                self._own_seconds += time.perf_counter() - entered
                yield
                return
            tracked = TrackedStep(
                self._inputs, step, self._active, self._replicated(), self._pieces()
            )
            with tracked:
                yield
            if tracked.result is not None:  # None: the step's later blocks come
                self._take(step, tracked.result)
        finally:
            self._in_track = False
            self._record_moves()

    def _start_step(self) -> None:
        """The first block of a step: the previous one is done, choose what is due."""
        self._watch.check_accumulation(self.pieces.accumulation_steps)
        self._warn_notices(stacklevel=4)  # user's with-line, contextlib, track, here
        self._watch.flush()
        now = time.perf_counter()
        self._step_time = None if self._last_entry is None else now - self._last_entry
        self._last_entry = now
        # The training thread's CPU time, which load distorts less than wall time.
        cpu = time.thread_time()
        cpu_seconds, self._last_cpu = cpu - self._last_cpu, cpu
        step, self.step = self.step, self.step + 1
        writer_seconds = self.writer.cpu_seconds
        if self._budget is not None and self._step_time is not None:
            spent = writer_seconds - self._writer_seconds
            self._budget.observe(
                step - 1,
                self._step_time,
                self._last_tracked,
                spent,
                self._own_seconds,
                cpu_seconds,
            )
            self._say_if_over_budget()
        self._writer_seconds = writer_seconds
        self._own_seconds = 0.0
        self._active = [q for q in self.quantities.values() if q.is_active(step)]
        self._last_tracked = frozenset(q.name for q in self._active)

    def _say_if_over_budget(self) -> None:
        """Log once that the budget cannot be kept, with the costs and the remedies."""
        if self._said_over_budget or not self._budget.over_budget:
            return
        self._said_over_budget = True
        exact_replay = bool(self.engines.batch) and self.replay_samples is None
        LOG.warning(over_budget_line(self._budget, self._batch_size, exact_replay))

    def _pieces(self) -> StepPieces | None:
        """The step's pieces if steps are split, else None (the one-block path)."""
        return self.pieces if self.pieces.split else None

    def _check_usable(self) -> None:
        if self._closed:
            raise UsageError(
                f"This Cockpit (run '{self.run_dir}') is closed; track() cannot add to "
                "it. Create a new Cockpit for a new run."
            )
        if self._in_track:
            raise UsageError(
                "track() blocks cannot be nested: one block is one training step. "
                "Close the outer block before opening the next."
            )

    def _replicated(self) -> dict[str, Any]:
        """The states every piece of a step holds alike (``cockpit.states``)."""
        return {
            "params": self.params,
            "initial": self.initial,
            "lr": self.current_plain_sgd_lr(),
            "mean_reduction": self.mean,
        }

    def _take(self, step: int, result: StepResult) -> None:
        """Submit a tracked step's records, or wait for ``optimizer.step()``."""
        if result.curvature_moved:
            self.stop_kronecker()
        for name, why in result.unsolvable.items():
            self.drop(name, self.absent, why, stacklevel=4)
            self.engines.changed = True  # meta.json's absent is written with them
        for name, why in result.inapplicable.items():
            self.drop(name, self.absent, why, stacklevel=1, warn=False)
            self.engines.changed = True
            LOG.info("cockpit: '%s' is not tracked: %s.", name, why)
        for record in result.late:
            self.submit(record)
        if self.pieces.split and self._global_batch_size is None:
            self._global_batch_size = result.batch_size
            self.writer.update_meta(global_batch_size=result.batch_size)
        result.record.values.update(self.bookkeeping(step, result.batch_size))
        self._batch_size = result.batch_size
        self._own_seconds += result.seconds
        if result.awaiting is not None:
            self._watch.wait(result.awaiting, result.seconds)
        else:
            result.record.values["tracker_time"] = result.seconds
            self.submit(result.record)

    def submit(self, record: TensorRecord) -> None:
        """Hand a record to the background writer."""
        self.writer.submit(record)

    def log(self, step: int | None = None, **metrics: Any) -> None:
        """Add user metrics (validation loss, accuracy, ...) to the log at ``step``.

        Args:
            step: The step they belong to; default: the last tracked step.
            **metrics: Name -> number or 0-dim tensor.

        """
        self._check_usable()
        clash = sorted(set(metrics) & (set(REGISTRY) | BOOKKEEPING))
        if clash:
            raise ConfigurationError(
                f"log() got {clash}, which the tracker itself logs. Use another name, "
                f"e.g. '{clash[0]}_user'."
            )
        for name, value in metrics.items():
            if not isinstance(value, (int, float, torch.Tensor)) or (
                isinstance(value, torch.Tensor) and value.numel() != 1
            ):
                raise ConfigurationError(
                    f"log() needs numbers or one-element tensors; {name}= got "
                    f"{type(value).__name__}. Pass e.g. {name}=float(value)."
                )
        at = max(self.step - 1, 0) if step is None else step
        self.submit(TensorRecord(at, time.time(), dict(metrics)))

    def _warn_notices(self, stacklevel: int) -> None:
        """Raise the writer's notices as warnings at the user's line (``stacklevel``)."""
        for notice in self.writer.drain_notices():
            category = NonFiniteWarning if "non-finite" in notice else CockpitWarning
            warnings.warn(notice, category, stacklevel=stacklevel + 1)

    def close(self, status: str = "finished") -> None:
        """Write what is pending and mark the run ``status``; idempotent."""
        self._close(status, stacklevel=2)

    def _close(self, status: str, stacklevel: int) -> None:
        if self._closed:
            return
        self._watch.close()
        self._drop_pending_pieces(stacklevel + 1)
        self._closed = True
        self.writer.close(status)
        _scratch.release()  # this thread's reused buffers (the next Cockpit makes new)
        self._warn_notices(stacklevel + 1)
        unregister(self)

    def _drop_pending_pieces(self, stacklevel: int) -> None:
        """Warn about, and note in ``meta.json``, a step's blocks left at close.

        They are not logged as a partial step: no optimizer step covers them, and on
        several ranks the reduction would need collectives that ranks closing at
        other points never reach. The numbers are this rank's.
        """
        pieces, samples = self.pieces.drop()
        if not pieces:
            return
        step = self.step - 1
        self.writer.update_meta(
            dropped_pieces={"step": step, "blocks": pieces, "samples": samples}
        )
        warnings.warn(
            f"Cockpit closed after {pieces} of the {self.pieces.accumulation_steps} "
            f"track() blocks of step {step} ({samples} samples on this process) "
            "without optimizer.step(): that step is not logged (noted in meta.json "
            "as 'dropped_pieces'). Close after the step's last block and "
            "optimizer.step() to log it.",
            CockpitWarning,
            stacklevel=stacklevel + 1,
        )

    def __enter__(self) -> Cockpit:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close("crashed" if exc_type is not None else "finished", stacklevel=2)


def _initial(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    """The parameters when tracking starts (``distance``'s origin), copied.

    One flat copy per device and dtype (:func:`cockpit._flat_buffers.copies`), whose
    difference to the parameters is one operation; sharded parameters (FSDP) are
    copied one by one, each rank keeping its shards.
    """
    if any(is_shard(p) for p in params.values()):
        return {name: p.detach().clone() for name, p in params.items()}
    return _flat_buffers.copies(params)
