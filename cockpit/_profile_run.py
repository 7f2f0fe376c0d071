"""One profiled configuration: a model copy trained a few steps, timed and measured.

The measurement behind :func:`cockpit.profile.profile` (whose docstring says what is
timed and how memory is read).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cockpit.exceptions import CockpitWarning
from cockpit.tracker import Cockpit

__all__ = ["measure_steps"]


def _peak_above_now(device: torch.device) -> Callable[[], float | None]:
    """Start a peak measurement: a function reading the peak bytes above now.

    It reads ``None`` where the peak cannot be measured (no ``/proc``).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
        return lambda: float(torch.cuda.max_memory_allocated(device) - held)
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current VmRSS
    except OSError:
        return lambda: None
    held = _status_bytes("VmRSS")

    def read() -> float | None:
        peak = _status_bytes("VmHWM")
        return None if peak is None or held is None else peak - held

    return read


def _status_bytes(field: str) -> float | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return 1024.0 * int(line.split()[1])
    return None


def measure_steps(
    model: nn.Module,
    loss_fn: nn.Module,
    batches: Sequence[tuple[Tensor, Tensor]],
    tracking: dict[str, Any] | None,
    loss_input: Callable[[Any], Tensor] | None,
    counts: tuple[int, int],
) -> tuple[float, float | None, str]:
    """Train a copy of ``model`` with plain SGD, tracked with ``tracking`` if given.

    Args:
        model: Copied, never changed.
        loss_fn: The loss module.
        batches: ``(inputs, targets)`` pairs, used in turn.
        tracking: The ``Cockpit``'s keyword arguments, or ``None`` for plain.
        loss_input: What the loss gets from the model's output.
        counts: ``(steps, warmup)``: timed steps after untimed ones.

    Returns:
        The median seconds per timed step, the peak bytes above what was held
        before them (``None`` if not measurable), and absent quantities' reasons.

    """
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    to_loss = loss_input or (lambda out: out)
    quiet = logging.getLogger("cockpit")
    level = quiet.level
    # setLevel, not assignment: the logger caches isEnabledFor per level.
    quiet.setLevel(logging.WARNING)  # no engine line per copy
    try:
        return _timed(model, loss_fn, tracking, batches, to_loss, device, counts)
    finally:
        quiet.setLevel(level)


def _timed(
    model: nn.Module,
    loss_fn: nn.Module,
    tracking: dict[str, Any] | None,
    batches: Sequence[tuple[Tensor, Tensor]],
    to_loss: Callable[[Any], Tensor],
    device: torch.device,
    counts: tuple[int, int],
) -> tuple[float, float | None, str]:
    """:func:`measure_steps` on the copied model, with the ``cockpit`` logger quiet."""
    steps, warmup = counts
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as logdir, warnings.catch_warnings():
        warnings.simplefilter("ignore", CockpitWarning)
        ck = None
        if tracking is not None:
            ck = Cockpit(model, loss_fn, optimizer, logdir=logdir, **tracking)
        times, read_peak = [], None
        for index in range(warmup + steps):
            if index == warmup:
                read_peak = _peak_above_now(device)
            x, y = batches[index % len(batches)]
            start = time.perf_counter()
            optimizer.zero_grad()
            with ck.track() if ck else contextlib.nullcontext():
                loss_fn(to_loss(model(x)), y).backward()
            optimizer.step()
            if ck:
                ck.writer.flush()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
        peak = read_peak() if read_peak else None
        absent = "; ".join(f"{k}: {why}" for k, why in ck.absent.items()) if ck else ""
        if ck:
            ck.close()
    return statistics.median(times), peak, absent
