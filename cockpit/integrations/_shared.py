"""What both integrations do alike: open the Cockpit on one rank of several."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cockpit.exceptions import CockpitWarning
from cockpit.tracker import Cockpit

#: Why only rank 0 tracks under several processes (until states are reduced).
SHARD_ONLY = (
    "only rank 0 tracks, and its statistics describe its own shard of each batch: "
    "per-sample losses and gradients of rank 0's samples (loss, norm_test, "
    "grad_hist_1d, ...); grad_norm, update_size and distance read the all-reduced "
    ".grad and the step every rank takes. The other ranks do not track and write "
    "nothing"
)


def innermost(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside wrappers that hold it as ``.optimizer``.

    Hugging Face's accelerate and Lightning wrap the user's optimizer; the tracker
    hooks the one whose ``step()`` changes the parameters.
    """
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def open_cockpit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    world_size: int,
    rank: int,
    options: Mapping[str, Any],
) -> Cockpit | None:
    """The Cockpit of this process: rank 0's, or ``None`` on the other ranks.

    Under several processes (DDP), ``.grad`` holds the gradient averaged over every
    rank's shard while the hooks see this rank's samples only, so the check that
    per-sample gradients add up to ``.grad`` would move every parameter to the
    replay for no reason; it is skipped there (:data:`SHARD_ONLY` says what the
    statistics then describe, once, as a ``CockpitWarning``).
    """
    if rank != 0:
        return None
    ck = Cockpit(model, loss_fn, innermost(optimizer), **options)
    if world_size > 1:
        warnings.warn(
            f"Training runs on {world_size} processes: {SHARD_ONLY}.",
            CockpitWarning,
            stacklevel=3,
        )
        ck.engines.verified = True
        ck.writer.update_meta(world_size=world_size, tracked_ranks=[0])
    return ck
