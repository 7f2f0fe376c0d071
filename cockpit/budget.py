"""The overhead budget's planner: measured costs in, each quantity's interval out.

Pure and torch-free, so it is unit-tested on made-up costs. The controller that
measures the costs during training and applies the plan is :mod:`cockpit._budget`.

Cost model. A step at which the set ``S`` of quantities is tracked costs, in seconds
of wall time beyond the plain training step::

    cost(S) = fixed * [S not empty] + sum_{e in engines(S)} engine[e] + sum_{q in S} own[q]

``fixed`` is what any tracked step costs (hooks, the loss capture, the record),
``engine[e]`` the work that quantities using the engine ``e`` share (the per-sample
statistics, the curvature), paid once per step however many of them are due, and
``own[q]`` what quantity ``q`` adds on top. A plan gives each quantity ``q`` an
interval ``k_q`` from a ladder (default :data:`LADDER`); ``q`` is tracked at the steps
``s`` with ``s % k_q`` in ``0 .. span_q - 1`` (``alpha`` spans two steps), all
counted from the same start so that quantities due together share the engines. The
plan repeats after ``P = lcm(LADDER)`` steps, so its mean overhead per step is exact
under the model:

    mean_cost = (1 / P) sum_{s < P} cost(due(s))

The budget ``b`` is a share of the wall time: ``mean_cost / (step + mean_cost) <= b``,
i.e. ``mean_cost <= b / (1 - b) * step`` with ``step`` the plain step's seconds. It
holds for the whole run, not period by period: :func:`allowance` lowers the next
period's allowed cost by what the run spent beyond it so far (the calibration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "LADDER",
    "Costs",
    "allowance",
    "allowed_seconds",
    "attribute",
    "mean_cost",
    "plan",
]

#: The intervals a plan chooses from; the largest is the longest a quantity waits.
LADDER = (1, 2, 5, 10, 25, 50)


@dataclass(frozen=True)
class Costs:
    """Seconds of wall time per tracked step, split as in the module's cost model.

    Attributes:
        fixed: Paid at every step at which anything is tracked.
        engine: Engine name -> paid once at a step at which a quantity using it runs.
        own: Quantity -> paid at each step at which it runs.
        uses: Quantity -> the engines it needs (none: only ``fixed`` and ``own``).
        span: Quantity -> tracked steps per due step (default 1; ``alpha`` 2).

    """

    fixed: float
    engine: Mapping[str, float]
    own: Mapping[str, float]
    uses: Mapping[str, frozenset[str]] = field(default_factory=dict)
    span: Mapping[str, int] = field(default_factory=dict)

    def of(self, tracked: frozenset[str] | set[str]) -> float:
        """``cost(S)``: the seconds one step tracking exactly ``tracked`` adds."""
        if not tracked:
            return 0.0
        engines = set().union(*(self.uses.get(q, frozenset()) for q in tracked))
        return (
            self.fixed
            + sum(self.engine.get(e, 0.0) for e in engines)
            + sum(self.own.get(q, 0.0) for q in tracked)
        )

    def scaled(self, factor: float) -> Costs:
        """Every cost times ``factor`` (a correction from measured steps)."""
        return Costs(
            self.fixed * factor,
            {e: c * factor for e, c in self.engine.items()},
            {q: c * factor for q, c in self.own.items()},
            self.uses,
            self.span,
        )


def attribute(
    probes: Mapping[frozenset[str], float], uses: Mapping[str, frozenset[str]]
) -> Costs:
    """Split the measured costs of probe steps into the cost model.

    ``probes[S]`` is the extra wall time of a step tracking exactly the set ``S``. The
    cheapest single quantity that needs no engine sets ``fixed``. Then, in order of
    how many engines they need, cheapest first, each probe's rest (its cost minus
    ``fixed`` and the engines and ``own`` costs priced so far) goes to the engines it
    brings that have no price yet (split evenly), or, where it brings none and
    tracks one quantity, to that quantity's ``own``. Last, the quantities probed
    only in groups share the rest of the first group holding them: step 0, which
    tracks everything, prices the per-sample pass and the quantities that were not
    probed alone. Each probe that set a price is reproduced by :meth:`Costs.of`;
    negative rests (measurement noise) become 0.

    Args:
        probes: Set of tracked quantities -> seconds of a step tracking exactly it.
        uses: Quantity -> the engines it needs.

    """

    def engines_of(tracked: frozenset[str]) -> frozenset[str]:
        return frozenset().union(*(uses.get(q, frozenset()) for q in tracked))

    def rest_of(tracked: frozenset[str], cost: float) -> float:
        """The probe's cost beyond ``fixed`` and what is priced so far."""
        priced = sum(engine.get(e, 0.0) for e in engines_of(tracked))
        return cost - fixed - priced - sum(own.get(q, 0.0) for q in tracked)

    free = [c for s, c in probes.items() if len(s) == 1 and not engines_of(s)]
    fixed = max(min(free), 0.0) if free else 0.0
    engine: dict[str, float] = {}
    own: dict[str, float] = {}
    order = sorted(probes.items(), key=lambda p: (len(engines_of(p[0])), p[1]))
    for tracked, cost in order:
        new = sorted(engines_of(tracked) - engine.keys())
        rest = max(rest_of(tracked, cost), 0.0)
        if new:
            engine.update(dict.fromkeys(new, rest / len(new)))
        if len(tracked) == 1:
            own.update(dict.fromkeys(tracked, 0.0 if new else rest))
    for tracked, cost in order:  # groups: their quantities not probed alone
        unpriced = tracked - own.keys()
        if unpriced:
            rest = max(rest_of(tracked, cost), 0.0)
            own.update(dict.fromkeys(unpriced, rest / len(unpriced)))
    return Costs(fixed, engine, {q: own.get(q, 0.0) for q in uses}, dict(uses))


def _period(ladder: tuple[int, ...]) -> int:
    return math.lcm(*ladder)


def _mask(interval: int, span: int, period: int) -> int:
    """Bit ``s`` set for each step ``s < period`` at which the quantity is tracked."""
    bits = 0
    for start in range(0, period, interval):
        for offset in range(span):
            bits |= 1 << ((start + offset) % period)
    return bits


def mean_cost(
    costs: Costs, intervals: Mapping[str, int], ladder: tuple[int, ...] = LADDER
) -> float:
    """Mean extra seconds per training step of the plan ``intervals`` (module doc).

    Args:
        costs: The cost model.
        intervals: Quantity -> its interval, a member of ``ladder``.
        ladder: The intervals plans choose from; fixes the period ``lcm(ladder)``.

    """
    period = _period(ladder)
    masks = {q: _mask(k, costs.span.get(q, 1), period) for q, k in intervals.items()}
    any_step = 0
    for bits in masks.values():
        any_step |= bits
    total = costs.fixed * any_step.bit_count()
    for name, seconds in costs.engine.items():
        paid = 0
        for q, bits in masks.items():
            if name in costs.uses.get(q, ()):
                paid |= bits
        total += seconds * paid.bit_count()
    total += sum(costs.own.get(q, 0.0) * bits.bit_count() for q, bits in masks.items())
    return total / period


def allowed_seconds(budget: float, step_seconds: float) -> float:
    """The mean extra seconds per step that keep the tracker's share at ``budget``."""
    return budget / (1.0 - budget) * step_seconds


def allowance(
    budget: float, step_seconds: float, steps: int, spent: float, period: int
) -> float:
    """The mean extra seconds per step the next ``period`` steps may cost.

    The budget holds for the run so far, calibration included, not only for each
    period: after ``steps`` steps that cost ``spent`` extra seconds in all, the next
    ``period`` steps may cost ``c`` each on average where

        spent + period * c <= a * (steps + period),  a = allowed_seconds(budget, step)

    i.e. the run's share stays at or under ``budget``. A debt (calibration, a period
    dearer than planned) is paid back by sparser plans; savings are not spent later,
    so ``c`` is at most ``a``, and at least 0.

    Args:
        budget: The tracker's allowed share of the wall time, in (0, 1).
        step_seconds: The plain training step's wall time in seconds.
        steps: Steps observed so far.
        spent: Their extra seconds beyond ``steps`` plain steps.
        period: The steps the next plan runs for.

    """
    steady = allowed_seconds(budget, step_seconds)
    owed = (steady * (steps + period) - spent) / period
    return min(max(owed, 0.0), steady)


def plan(
    costs: Costs,
    step_seconds: float,
    budget: float,
    rank: Mapping[str, int] | None = None,
    ladder: tuple[int, ...] = LADDER,
    allowed: float | None = None,
) -> dict[str, int]:
    """Each quantity's interval: as short as the budget allows, cheapest first.

    Every quantity starts at the longest interval, ``max(ladder)``, which it keeps
    even when that alone exceeds the budget (then the plan is over budget; see
    :func:`mean_cost`). Then, one rung at a time, the quantity whose next shorter
    interval adds the least mean cost, weighted by ``2 ** rank[q]`` (rank 0 for the
    most informative, e.g. the economy preset's quantities), moves down a rung, as
    long as the plan stays within the budget. Ties go to the lower rank, then the
    name. The result: no quantity can move down a rung without exceeding the budget.

    Args:
        costs: The cost model (:func:`attribute`), seconds per tracked step.
        step_seconds: The plain training step's wall time in seconds.
        budget: The tracker's allowed share of the wall time, in (0, 1).
        rank: Quantity -> informativeness rank (0 best); default 0 for all.
        ladder: The intervals to choose from, ascending.
        allowed: The mean extra seconds per step to stay within; by default
            ``allowed_seconds(budget, step_seconds)`` (see :func:`allowance`). At 0
            every quantity keeps the longest interval, even if priced at 0 (noise
            on a loaded machine makes probes look free).

    Returns:
        Quantity -> interval, for every quantity of ``costs.own``.

    """
    rank = rank or {}
    if allowed is None:
        allowed = allowed_seconds(budget, step_seconds)
    rungs = sorted(ladder)
    chosen = {q: len(rungs) - 1 for q in sorted(costs.own)}
    if allowed <= 0:  # a debt: nothing beyond the floor, however cheap it looks
        return {q: rungs[-1] for q in chosen}

    def as_intervals(rung_of: Mapping[str, int]) -> dict[str, int]:
        return {q: rungs[r] for q, r in rung_of.items()}

    current = mean_cost(costs, as_intervals(chosen), ladder)
    while True:
        best = None
        for q, r in chosen.items():
            if r == 0:
                continue
            trial = mean_cost(costs, as_intervals({**chosen, q: r - 1}), ladder)
            if trial > allowed:
                continue
            key = ((trial - current) * 2 ** rank.get(q, 0), rank.get(q, 0), q)
            if best is None or key < best[0]:
                best = (key, q, trial)
        if best is None:
            return as_intervals(chosen)
        _, q, current = best
        chosen[q] -= 1
