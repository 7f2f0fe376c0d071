"""An untracked step with a Cockpit attached costs what a plain step costs.

DESIGN.md: "Untracked steps cost nothing: no BackPACK context, no hooks." The
overhead budget rests on it: it takes the untracked steps' time as the plain step's,
so work left behind by tracked steps (a hook that stays installed) is paid on every
step and never measured. Checked by counting: the ATen operations an untracked step
dispatches, after tracked steps of every engine, against a plain twin's step, and the
hooks left on the parameters, the modules and the optimizer.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import cockpit
from cockpit.exceptions import AbsentQuantityWarning
from cockpit.quantities import PRESETS
from tests.problems import Problem

#: Tracked at steps 0 and 4; alpha also at 1 and 5 (it needs the following step).
SCHEDULE = cockpit.every(4)
UNTRACKED = (2, 3, 6, 7)


class _Operations(TorchDispatchMode):
    """The ATen operations dispatched on this thread while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _step(problem, model, loss_fn, optimizer, step, ck=None) -> Counter[str]:
    """One training step (tracked by ``ck`` if given); its ATen operations."""
    x, y = problem.batch(step)
    with _Operations() as operations:
        optimizer.zero_grad()
        if ck is None:
            loss_fn(model(x), y).backward()
        else:
            with ck.track():
                loss_fn(model(x), y).backward()
        optimizer.step()
    return operations.names


def _hooks(model, optimizer) -> dict[str, int]:
    """Hooks installed on the parameters, the modules and the optimizer."""
    return {
        "parameters": sum(len(p._backward_hooks or {}) for p in model.parameters()),
        "modules": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in model.modules()
        ),
        "optimizer": len(optimizer._optimizer_step_pre_hooks)
        + len(optimizer._optimizer_step_post_hooks),
    }


def test_untracked_steps_dispatch_the_operations_of_plain_steps(
    problem: Problem, tmp_path
):
    model, loss_fn = problem.make()
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AbsentQuantityWarning)  # e.g. token inputs
        ck = cockpit.Cockpit(
            model,
            loss_fn,
            optimizer,
            logdir=tmp_path,
            preset=None,
            quantities=dict.fromkeys(PRESETS["economy"], SCHEDULE),
        )
    plain_hooks = _hooks(twin, twin_optimizer)
    counts = {}
    for step in range(8):
        plain = _step(problem, twin, loss_fn, twin_optimizer, step)
        attached = _step(problem, model, loss_fn, optimizer, step, ck)
        if step in UNTRACKED:
            counts[step] = (attached, plain)
            watch = 2  # the Cockpit's own pair of optimizer hooks, which count no op
            assert _hooks(model, optimizer) == {
                **plain_hooks,
                "optimizer": plain_hooks["optimizer"] + watch,
            }, f"hooks left installed at untracked step {step}"
    ck.close()
    logged = {r["step"] for r in cockpit.LogReader(ck.run_dir).read_new()}
    assert logged.isdisjoint(UNTRACKED), "the steps compared must be untracked"
    assert {0, 4} <= logged
    extra = {step: attached - plain for step, (attached, plain) in counts.items()}
    assert all(attached == plain for attached, plain in counts.values()), (
        f"ATen operations an untracked step adds to a plain one, by step: {extra}"
    )
