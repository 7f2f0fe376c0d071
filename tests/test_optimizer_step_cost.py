"""What the tracker adds to ``optimizer.zero_grad()`` and ``optimizer.step()`` stays
the same as a model gets deeper.

The step's snapshot before ``optimizer.step()``, its difference after it, the norms
of the step (``update_size``, ``alpha``'s step length) and the unit step run on one
flat buffer per device and dtype, so the operations they dispatch do not depend on
the number of parameter tensors. Counted on the narrow MLPs of
``tests/test_cost_per_layer.py`` (8 and 32 layers, plain SGD), tracked minus plain,
phase by phase.

Python work per tensor is counted as function calls and calls of builtins made from
Python code (``sys.setprofile``'s ``call`` and ``c_call``). Before the optimizer-step
pass (commit ce9d1d2) ``update_size`` alone added 2 per added parameter tensor in
``optimizer.step()`` (each snapshot read every parameter's address in a list
comprehension); now none: the addresses are read by ``map`` in C (one
``data_ptr`` per parameter and snapshot is what is left per tensor, out of sight
of this counter), and the views per parameter of the step are made only where a
reader asks for them.
"""

from __future__ import annotations

import collections
import contextlib

import cockpit
from cockpit.presets import PRESETS
from tests.test_cost_per_layer import (
    ADDED,
    DEPTHS,
    STEPS,
    _Operations,
    _problem,
    _PythonCalls,
)

Counts = collections.Counter[str]


class _Calls(_PythonCalls):
    """Python function calls and builtin calls from Python code, by name."""

    def _count(self, frame, event: str, arg) -> None:
        if event == "c_call":
            self.names[f"builtin:{getattr(arg, '__qualname__', arg)}"] += 1
        else:
            super()._count(frame, event, arg)

    def __enter__(self) -> _Calls:
        super().__enter__()
        return self


def _phases(
    depth: int, tmp_path, quantities: dict[str, int] | None, counter: type
) -> tuple[Counts, Counts]:
    """``counter``'s counts in ``zero_grad()`` and ``step()`` over :data:`STEPS`
    steps after a warm-up step; ``quantities=None`` trains plain."""
    model, loss_fn, optimizer, x, y = _problem(depth)
    ck = None
    if quantities is not None:
        run = f"depth{depth}-{len(list(tmp_path.iterdir()))}"
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=tmp_path,
            run_name=run,
            preset=None,
            quantities=quantities,
        )
    zeroing, stepping = counter(), counter()
    for step in range(STEPS + 1):
        counted = step > 0
        with zeroing if counted else contextlib.nullcontext():
            optimizer.zero_grad()
        with ck.track() if ck is not None else contextlib.nullcontext():
            loss_fn(model(x), y).backward()
        with stepping if counted else contextlib.nullcontext():
            optimizer.step()
    if ck is not None:
        ck.close()
    return zeroing.names, stepping.names


def _added(tmp_path, quantities: dict[str, int], counter: type) -> list[list[Counts]]:
    """Per depth, per phase (zero_grad, step): tracked minus plain counts."""
    added = []
    for depth in DEPTHS:
        plain = _phases(depth, tmp_path, None, counter)
        tracked = _phases(depth, tmp_path, quantities, counter)
        added.append([t - p for t, p in zip(tracked, plain, strict=True)])
    return added


ECONOMY = dict.fromkeys(PRESETS["economy"], 1)


def test_the_step_phase_dispatches_as_many_operations_at_any_depth(tmp_path):
    """Economy at every step (``alpha`` and ``update_size`` read the step): the
    tracker's operations in ``zero_grad()`` (none) and ``optimizer.step()`` are the
    same at 8 and 32 layers."""
    (zero_shallow, step_shallow), (zero_deep, step_deep) = _added(
        tmp_path, ECONOMY, _Operations
    )
    assert zero_shallow.total() == zero_deep.total() == 0, zero_deep
    assert step_shallow.total() > 0  # the snapshot, its difference, the norms
    assert step_deep.total() == step_shallow.total(), step_deep - step_shallow


def test_the_step_phase_adds_no_python_call_per_parameter_tensor(tmp_path):
    """``update_size`` alone (no per-sample statistics): the snapshot, its
    difference and the step's norms add no Python call per added parameter tensor
    (2.0 before the optimizer-step pass)."""
    shallow, deep = (step for _, step in _added(tmp_path, {"update_size": 1}, _Calls))
    grown = deep - shallow
    assert (deep.total() - shallow.total()) / STEPS / ADDED <= 0.5, grown
