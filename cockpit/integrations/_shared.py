"""What both integrations do alike: open the Cockpit of each rank, refuse what breaks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cockpit.exceptions import ConfigurationError
from cockpit.tracker import Cockpit

#: Cockpit arguments the integrations set from their trainer's configuration.
FROM_TRAINER = ("accumulation_steps", "process_group")


def innermost(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside wrappers that hold it as ``.optimizer``.

    Hugging Face's accelerate and Lightning wrap the user's optimizer; the tracker
    hooks the one whose ``step()`` changes the parameters.
    """
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def check_options(options: Mapping[str, Any], trainer: str) -> None:
    """Refuse Cockpit arguments that ``trainer``'s configuration decides.

    Raises:
        ConfigurationError: If ``options`` names ``accumulation_steps`` or
            ``process_group``.

    """
    given = sorted(set(options) & set(FROM_TRAINER))
    if given:
        raise ConfigurationError(
            f"CockpitCallback takes {given} from the {trainer}'s own configuration "
            "(its gradient accumulation and its processes); remove them from the "
            "callback's arguments."
        )


def check_window(batches: int, accumulation_steps: int, trainer: str) -> None:
    """Refuse an epoch whose last accumulation window is shorter than the others.

    The trainers step the optimizer after an epoch's last micro-batch even when the
    window is incomplete, while the Cockpit's ``accumulation_steps`` is one number
    for every step, so such a step could not be recorded.

    Raises:
        ConfigurationError: If ``batches`` (micro-batches per epoch and rank) is not
            a multiple of ``accumulation_steps``.

    """
    if batches % accumulation_steps:
        raise ConfigurationError(
            f"The {trainer} accumulates gradients over {accumulation_steps} "
            f"micro-batches, but an epoch has {batches} per process, so its last "
            f"optimizer step covers {batches % accumulation_steps}; the Cockpit needs "
            "the same number of micro-batches in every step. Make the batches per "
            f"epoch a multiple of {accumulation_steps} (dataset size, batch size, "
            "drop_last) or change the accumulation."
        )


def open_cockpit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    world_size: int,
    accumulation_steps: int,
    process_group: dist.ProcessGroup | None,
    options: Mapping[str, Any],
) -> Cockpit:
    """The Cockpit of this process, one on every rank.

    With ``world_size > 1`` every rank tracks its shard of each batch, the tracker
    reduces the states across the ranks of ``process_group`` (``None``: the world)
    and rank 0 alone writes, so each record describes the global batch (see
    :mod:`cockpit._distributed`). ``accumulation_steps`` micro-batches (``track()``
    blocks) make one record. Across processes the Cockpit keeps no overhead budget
    (its default there is the plain economy preset, and ``budget=`` is refused):
    see ``cockpit._setup.default_tracking``.

    """
    group = None
    if world_size > 1:
        group = process_group if process_group is not None else dist.group.WORLD
    return Cockpit(
        model,
        loss_fn,
        innermost(optimizer),
        accumulation_steps=accumulation_steps,
        process_group=group,
        **options,
    )


def written_run_dir(cockpit: Cockpit | None) -> Path | None:
    """Where ``cockpit`` writes its log; ``None`` before training and on ranks > 0."""
    if cockpit is None or not (cockpit.ranks is None or cockpit.ranks.writes):
        return None
    return cockpit.run_dir
