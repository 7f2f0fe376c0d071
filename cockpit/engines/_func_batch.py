"""The step as the torch.func engine replays it, and why a replay is refused.

Semantics of the replay:

- The replay uses the parameters at the end of the block, the kept model inputs, and
  the target the loss module got. The mini-batch gradient used in ``g_n . g`` is the
  one the user's backward put in ``.grad``.
- Random operations (dropout) draw their own masks per sample inside ``vmap``, from
  a seed of the tracker's generator in a fork of the global random state: the
  training's random stream is untouched, but the per-sample gradients see other
  dropout masks than the step did (they are statistics of the same model, with
  dropout noise of their own).
- BatchNorm in training mode couples the samples, so a per-sample replay cannot
  see the step: such a model goes to the batch replay
  (:mod:`cockpit.engines.batch_replay`), found by :func:`batch_norm_in_training`;
  ``engine="backpack"`` refuses it (:func:`refuse_batch_norm`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cockpit.engines.hessian import ForwardCapture
from cockpit.exceptions import UnsupportedModelError, UsageError

__all__ = [
    "Batch",
    "ReplayInputs",
    "batch_norm_in_training",
    "choose_field",
    "output_fields",
    "output_itself",
    "refuse_batch_norm",
    "replay_failure",
]


def refuse_batch_norm(model: nn.Module) -> None:
    """Refuse BatchNorm in training mode for ``engine="backpack"`` (samples coupled)."""
    why = batch_norm_in_training(model)
    if why is not None:
        raise UnsupportedModelError(
            f"{why}: each sample's loss depends on the other samples, and BackPACK's "
            "per-sample gradients miss that coupling. Use engine='auto', which "
            "computes g_n = d l_n / d theta through the whole batch (the batch "
            "replay), or put BatchNorm layers in eval mode while tracking."
        )


def batch_norm_in_training(model: nn.Module) -> str | None:
    """Why the model's samples are coupled (a BatchNorm in training mode), or None."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            return (
                f"Module '{name}' ({type(module).__name__}) is in training mode and "
                "normalizes with the statistics of the whole batch"
            )
    return None


@dataclass
class Batch:
    """The step as the engine replays it.

    Attributes:
        capture: The model's kept call (inputs and random state).
        target: The target the loss module got.
        input_shape: The shape of the loss module's input ``[N, ...]``.
        seed: Seeds random operations (dropout) in the replay.

    """

    capture: ForwardCapture
    target: Tensor
    input_shape: torch.Size
    seed: int

    @property
    def size(self) -> int:
        """N."""
        return self.input_shape[0]

    def check_shape(self, shape: torch.Size) -> None:
        """Refuse a replayed loss input whose shape is not one sample's."""
        if tuple(shape[1:]) != tuple(self.input_shape[1:]) or shape[0] != 1:
            raise UsageError(
                f"The loss module got an input of shape {list(self.input_shape)}, but "
                f"the model's output (through loss_input) has shape "
                f"{[self.size, *shape[1:]]} per batch. The torch.func engine replays "
                "model -> loss per sample and needs to know what happens in between: "
                "pass Cockpit(..., loss_input=fn) with fn(output) -> the loss "
                "module's input, e.g. loss_input=lambda out: out.transpose(1, 2), "
                "with the batch dimension first and kept."
            )


class ReplayInputs:
    """The model's kept call, split into per-sample tensors and everything else."""

    def __init__(self, capture: ForwardCapture, n: int):
        if capture.args is None:
            raise UsageError(
                "The torch.func engine replays the model, but the model was not "
                "called inside the track() block. Call the model given to Cockpit "
                "inside it."
            )
        self.args, self.kwargs = capture.args, capture.kwargs
        self.batched: dict[Any, Tensor] = {}
        for key, value in [*enumerate(self.args), *self.kwargs.items()]:
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
                self.batched[key] = value.detach()

    def rows(self, rows: slice) -> dict[Any, Tensor]:
        return {key: value[rows] for key, value in self.batched.items()}

    def call(self, one: dict[Any, Tensor]) -> tuple[tuple, dict]:
        """The model's arguments for one sample (batch dimension 1)."""
        args = [one[i].unsqueeze(0) if i in one else a for i, a in enumerate(self.args)]
        kwargs = {
            k: one[k].unsqueeze(0) if k in one else v for k, v in self.kwargs.items()
        }
        return tuple(args), kwargs


def output_itself(output: Any) -> Tensor:
    """The default ``loss_input``: the model's output itself, if it is a tensor."""
    if not isinstance(output, Tensor):
        raise UsageError(
            f"The model returned a {type(output).__name__}, not a tensor, so the "
            "torch.func engine cannot tell what the loss module gets. Pass "
            "Cockpit(..., loss_input=fn) with fn(output) -> the loss module's input, "
            "e.g. loss_input=lambda out: out.logits."
        )
    return output


def output_fields(output: Any) -> dict[Any, torch.Size] | None:
    """Key or index -> shape of each tensor in a dict, ``ModelOutput`` or tuple output.

    None for a tensor output (the loss input is the output itself by default).
    """
    if isinstance(output, Tensor):
        return None
    items = output.items() if isinstance(output, Mapping) else enumerate(output)
    return {k: v.shape for k, v in items if isinstance(v, Tensor)}


def choose_field(
    fields: dict[Any, torch.Size], input_shape: torch.Size
) -> Callable[[Any], Tensor]:
    """The loss input of a structured output when only one choice fits.

    Unambiguous means: exactly one tensor field has the loss input's shape (taken as
    it is); or none has, and exactly one field ``f`` of at least three dimensions
    has ``f.transpose(1, 2)`` of that shape (a sequence model's ``[N, T, C]`` logits
    for a loss that wants the class axis second). Anything else (two candidates, a
    reshape to ``[N * T, C]``, which changes what a sample is) needs ``loss_input``.

    Raises:
        UsageError: Naming every field with its shape.

    """
    same = [k for k, shape in fields.items() if shape == input_shape]
    if len(same) == 1:
        return lambda out, key=same[0]: out[key]
    swapped = [
        k
        for k, shape in fields.items()
        if len(shape) >= 3 and (shape[0], shape[2], shape[1], *shape[3:]) == input_shape
    ]
    if not same and len(swapped) == 1:
        return lambda out, key=swapped[0]: out[key].transpose(1, 2)
    seen = ", ".join(f"{k!r}: {list(shape)}" for k, shape in fields.items())
    raise UsageError(
        f"The model returned several outputs ({seen or 'no tensors'}) and the loss "
        f"module got a tensor of shape {list(input_shape)}; the tracker cannot tell "
        "which output (or which view of it) that was. Pass Cockpit(..., "
        "loss_input=fn) with fn(output) -> the loss module's input, e.g. "
        "loss_input=lambda out: out.logits."
    )


def replay_failure(error: Exception) -> UnsupportedModelError:
    """The error to raise when ``vmap`` could not replay the model per sample."""
    return UnsupportedModelError(
        "The torch.func engine could not replay the model per sample "
        f"({type(error).__name__}: {error}). torch.func's vmap "
        "refuses data-dependent control flow (if on a tensor's "
        "value), .item() and in-place changes of module state in "
        "forward. Make the forward pass free of them, or use "
        "engine='backpack' or drop the per-sample and curvature "
        "quantities."
    )
