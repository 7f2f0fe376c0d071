"""What a tracked step gets from the tracker and what it hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cockpit._optimizer_step import AwaitingStep
from cockpit._record import TensorRecord
from cockpit.engines._hook_slots import HookSlots, HookTargets
from cockpit.engines.batch_replay import BatchReplay
from cockpit.engines.choice import Assignment
from cockpit.engines.func_engine import FuncEngine

__all__ = ["StepInputs", "StepResult"]


@dataclass
class StepInputs:
    """What every tracked step needs of the tracker, built once per Cockpit.

    Attributes:
        model: The model.
        params: Parameter name -> trainable parameter, in the tracker's order.
        loss_fn: The user's loss module.
        mean: The loss averages over samples (else it sums).
        engines: The engine assignment (moves found at a step are recorded on it).
        func: The torch.func engine (replay, curvature).
        batch_replay: The batch replay (coupled samples, recurrent layers).
        curvature_modules: The leaf modules BackPACK's curvature extensions hook.
        batch_norms: The model's BatchNorm modules.
        hist_samples: Histogram sample budget (0: exact).
        single: Every parameter is float32 or narrower: the records' float64
            statistics are written with float32's digits (:mod:`cockpit._record`).
        generator: The tracker's random generator on a device.
        sampling_seed: Draws a seed for Monte-Carlo curvature.
        hook_slots: The forward hooks' kept handles, swapped in per block.
        hook_targets: The modules BackPACK's first-order hooks serve, kept across
            steps (:mod:`cockpit.engines._hook_slots`).

    """

    model: nn.Module
    params: dict[str, nn.Parameter]
    loss_fn: nn.Module
    mean: bool
    engines: Assignment
    func: FuncEngine
    batch_replay: BatchReplay
    curvature_modules: list[nn.Module]
    batch_norms: list[nn.Module]
    hist_samples: int
    single: bool
    generator: Callable[[torch.device], torch.Generator]
    sampling_seed: Callable[[], int]
    hook_slots: HookSlots = field(default_factory=HookSlots)
    hook_targets: HookTargets = field(init=False)

    def __post_init__(self) -> None:
        self.hook_targets = HookTargets(self.hook_slots)


@dataclass
class StepResult:
    """What a tracked step hands back to the tracker.

    Attributes:
        record: This step's record (without bookkeeping and ``tracker_time``).
        batch_size: N.
        late: Records of values that belong to earlier steps.
        awaiting: The record and quantities waiting for ``optimizer.step()``.
        seconds: The tracker's own time spent in the step.
        curvature_moved: Curvature moved to torch.func at this step, so the
            quantities only BackPACK computes stop.
        unsolvable: Quantities whose eigensolve failed on this model, and why; they
            stop, with a warning.
        inapplicable: Quantities the model's kind of input does not define (an
            input scale of token ids), and why; they stop, said in ``meta.json``
            and the ``cockpit`` logger, without a warning.

    """

    record: TensorRecord
    batch_size: int
    late: list[TensorRecord]
    awaiting: AwaitingStep | None
    seconds: float
    curvature_moved: bool = False
    unsolvable: dict[str, str] = field(default_factory=dict)
    inapplicable: dict[str, str] = field(default_factory=dict)
