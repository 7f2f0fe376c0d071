"""The line the tracker logs once when the overhead budget cannot be kept.

A plan is over budget (:attr:`BudgetControl.over_budget`) when even every quantity
at its longest interval costs more than the budget allows: the tracked steps are
too dear for the plain step they ride on. ``meta.json`` says so (``over_budget``);
this line tells the user at the time, with what the tracked steps cost and what to
change. For a model on the batch replay (BatchNorm in training mode), whose
per-sample pass differentiates every sample of the batch, it suggests
``replay_samples=M``, a random subsample of M samples per step, with an M estimated
to fit: the part of the per-sample pass the budget leaves, as a share of the
batch. That estimate treats the pass as proportional to M, which its fixed part
(the replayed forward pass) makes optimistic.
"""

from __future__ import annotations

import math

from cockpit._budget import BudgetControl
from cockpit.budget import allowed_seconds

__all__ = ["over_budget_line", "samples_that_fit"]

PER_SAMPLE = "per_sample"
#: The engines' names in the line.
ENGINES = {PER_SAMPLE: "the per-sample pass", "curvature": "the curvature pass"}


def over_budget_line(
    control: BudgetControl, batch_size: int | None, batch_replay: bool
) -> str:
    """What the tracked steps cost against the budget, and what to change.

    Args:
        control: The budget's controller, just re-planned and over budget.
        batch_size: N of the last tracked step (``None`` before one).
        batch_replay: Whether the per-sample pass is the batch replay with every
            sample (a coupled model, no ``replay_samples``).

    """
    assert control.costs is not None and control.plain_seconds is not None
    costs = control.costs.scaled(control.scale)
    parts = {"the fixed part": costs.fixed}
    parts.update({ENGINES.get(e, e): seconds for e, seconds in costs.engine.items()})
    parts.update(costs.own)
    dearest = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    listed = ", ".join(f"{name} {1e3 * s:.1f} ms" for name, s in dearest if s > 0)
    share = control.planned_share or 0.0
    line = (
        f"cockpit: the overhead budget of {control.budget:.0%} cannot be kept: with "
        f"every quantity every {control.period} steps the tracker takes "
        f"{share:.0%} of the wall time (plain step "
        f"{1e3 * control.plain_seconds:.1f} ms; a tracked step adds {listed})."
    )
    fitting = samples_that_fit(control, batch_size) if batch_replay else None
    if fitting is not None:
        line += (
            f" The per-sample pass differentiates all {batch_size} samples of the "
            "batch (BatchNorm couples them): Cockpit(..., replay_samples=M) "
            f"differentiates M random ones instead, unbiased estimates; about "
            f"M = {fitting} would fit."
        )
    return line + " Raise budget= or track fewer quantities."


def samples_that_fit(control: BudgetControl, batch_size: int | None) -> int | None:
    """The M of ``replay_samples=M`` that would bring the plan within the budget.

    With every quantity at the longest interval ``P`` a tracked step may cost
    ``P`` times the allowed mean extra seconds; what the step costs beyond that
    comes off the per-sample work (the pass and the quantities reading it, whose
    split the probes of a small model price unreliably), taken as proportional to
    M. At least 1, less than N; ``None`` without per-sample work or a batch size.
    """
    costs = control.costs
    if costs is None or control.plain_seconds is None or not batch_size:
        return None
    costs = costs.scaled(control.scale)
    engine = costs.engine.get(PER_SAMPLE, 0.0) + sum(
        seconds
        for name, seconds in costs.own.items()
        if PER_SAMPLE in costs.uses.get(name, frozenset())
    )
    if engine <= 0:
        return None
    allowed = control.period * allowed_seconds(control.budget, control.plain_seconds)
    step = costs.of(frozenset(control.intervals))
    left = engine - (step - allowed)
    return max(1, min(batch_size - 1, math.floor(batch_size * left / engine)))
