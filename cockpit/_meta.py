"""``meta.json`` at the start of a run: what was tracked, how, and on what."""

from __future__ import annotations

import importlib.metadata
import math
import secrets
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn


def new_run_name() -> str:
    """``YYYYmmdd-HHMMSS-host-xxxx``: sorts by time, unique across processes."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    host = socket.gethostname().split(".")[0]
    return f"{stamp}-{host}-{secrets.token_hex(2)}"


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced by its ``repr``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run_meta(
    *,
    name: str,
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    loss: tuple[nn.Module, bool],
    optimizer: torch.optim.Optimizer,
    preset: str | None,
    quantities: Mapping[str, Any],
    absent: dict[str, str],
    engines: dict[str, Any],
    hist_samples: int,
    config: Mapping[str, Any] | None,
    grad_scaler: bool = False,
    budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's ``meta.json`` as the tracker writes it when the run starts.

    Args:
        name: The run's name.
        model: The model.
        params: Parameter name -> tracked parameter.
        loss: The loss module and whether it averages over samples.
        optimizer: The optimizer.
        preset: The preset's name, or ``None``.
        quantities: Log key -> configured quantity.
        absent: Log key -> why it is not tracked.
        engines: The engine assignment as ``meta.json`` stores it.
        hist_samples: The histogram sample budget.
        config: The user's hyperparameters.
        grad_scaler: The loss is scaled by a ``GradScaler`` before ``backward()``.
        budget: The overhead budget's plan (``BudgetControl.as_meta``), if any.

    """
    loss_fn, mean = loss
    return json_safe(
        {
            "run_name": name,
            "created": datetime.now(timezone.utc).isoformat(),
            "host": socket.gethostname(),
            "versions": {
                "torch": torch.__version__,
                "backpack": importlib.metadata.version("backpack-for-pytorch"),
                "python": sys.version.split()[0],
            },
            "model": type(model).__name__,
            "parameters": {n: list(p.shape) for n, p in params.items()},
            "frozen": [n for n, p in model.named_parameters() if not p.requires_grad],
            "loss": {"type": type(loss_fn).__name__, "mean": mean},
            "optimizer": {
                "type": type(optimizer).__name__,
                "defaults": optimizer.defaults,
            },
            "preset": preset,
            "quantities": {n: repr(q.schedule) for n, q in quantities.items()},
            "options": {n: q.options() for n, q in quantities.items() if q.options()},
            "absent": absent,
            "engines": engines,
            "hist_samples": hist_samples,
            "config": dict(config or {}),
            "grad_scaler": grad_scaler,
            "budget": budget,
        }
    )
