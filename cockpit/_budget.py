"""The overhead budget at work: measure wall time, plan intervals, schedule quantities.

``Cockpit(budget=0.05)`` hands its budgeted quantities a :class:`BudgetSchedule`
each, which asks one :class:`BudgetControl` whether the quantity is due. The control
measures nothing on the device: the tracker reports each step's wall time (from one
``track()`` entry to the next, the same clock as ``step_time``), which quantities
it tracked and the CPU seconds the log writer's thread spent meanwhile, and the
control compares tracked steps with untracked ones.

Two clocks: the tracker also reports the training thread's CPU time per step, and a
step's extra time is priced from both (:mod:`cockpit._budget_clocks`), so that a
wall clock that varies tenfold with the load cannot price work that ran at 0; an
engine priced at 0 all the same keeps its last positive price. Neither clock can
price a tracked step below the tracker's own seconds in it (``tracker_time``, its
hooks, entry and exit), which the tracker reports with the step: that floor keeps
``fixed`` and the engine-free quantities above 0 where both clocks' differences are
noise.

The writer's seconds are overhead wherever they fall. Its thread materializes and
encodes a record while the next steps run, untracked ones too, and on a machine with
few cores (or a training thread that needs the GIL) it slows them about as much as it
computes. So each step's own time is its wall time minus the writer's seconds during
it: the plain step's time is not inflated by the writer, and the writer's seconds of
the period are added to its measured extra time in full. On many idle cores that
overstates the writer's cost; the budget errs on that side.

The run in phases (steps counted by ``track()`` blocks):

1. Step 0 tracks every budgeted quantity, so every panel has a first value; its
   time prices the engines together with the quantities probed only there.
2. Calibration: pairs of an untracked step and a probe step
   (:func:`calibration_probes`). The probes track each quantity that needs no
   engine alone (they are cheap, or as the eigensolves costly on their own) and
   the quantities needing the same engines together, but for the group needing
   the most engines, which step 0 prices (under the economy preset the per-sample
   pass: probing it again would cost it twice more, with ``alpha``'s second
   step). Untracked steps give the plain step's time (median); the probes' extra
   seconds are split into the cost model by :func:`cockpit.budget.attribute`.
3. From then on the plan of :func:`cockpit.budget.plan`, repeating every
   ``P = lcm(ladder)`` steps; the last step of every 10 is left untracked as a
   reference for the plain step (so "every step" means 9 steps of 10). After
   every period the control re-plans: steps tracking a probed set again (a single
   quantity, or everything as at step 0) re-price it, the measured extra time of
   the tracked steps (medians per set of tracked quantities) against the cost
   model's prediction scales the costs, and the plan must keep the run's share
   within the budget (:func:`cockpit.budget.allowance`): what the calibration
   cost beyond the budget is paid back by sparser plans.
4. Re-probes: a probed set the plan never tracks alone (everything due together at
   the period's first step) would keep the price of its one calibration probe for
   the rest of the run, however far noise pushed it. So a probed set with fewer
   than ``_ROBUST`` probes that the plan never tracks alone and that could run more
   often runs once more, alone, at the first step of the period where nothing else
   is due (the period's last reference step if every step has something): one set
   per period, the dearest first (:meth:`BudgetControl._choose_reprobe`). Its
   regular runs stay, so no gap between two of its runs grows; a set costs at most
   ``_ROBUST - 1`` such runs in the whole run, after which the median of its
   probes outvotes one noisy probe.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cockpit._budget_clocks import PlainStep, step_extra
from cockpit.budget import (
    LADDER,
    Costs,
    allowance,
    allowed_seconds,
    attribute,
    mean_cost,
    plan,
)
from cockpit.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BUDGET",
    "BudgetControl",
    "BudgetSchedule",
    "calibration_probes",
    "check_budget",
    "probe_sets",
]

#: The budget of a Cockpit given neither a preset nor quantities.
DEFAULT_BUDGET = 0.05
#: Recent untracked steps whose median is the plain step's time.
_BASELINE_STEPS = 25
#: Recent probes of a quantity alone whose median is its cost.
_PROBES = 9
#: The untracked steps nearest a probe whose median is its plain step: the load
#: of a shared machine drifts, and a probe is priced against the steps around it.
_LOCAL_STEPS = 5
#: Probes of a set whose median one noisy probe cannot move far: fewer, and a set the
#: plan never tracks alone is probed again (see the module's phase 4).
_ROBUST = 3
#: Every this many steps one stays untracked, the plain step's reference. Its offset
#: (9, 19, ...) is a multiple of no interval of the ladder but 1, so only quantities
#: planned every step skip it.
_REFERENCE_EVERY = 10


def check_budget(budget: object) -> float:
    """``budget`` as a float in (0, 1), or a :class:`ConfigurationError`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise ConfigurationError(
            f"budget must be a number in (0, 1), the tracker's share of the wall "
            f"time, got {type(budget).__name__}: {budget!r}. E.g. budget=0.05."
        )
    if not 0.0 < budget < 1.0:
        raise ConfigurationError(
            f"budget must be in (0, 1), the tracker's share of the wall time, got "
            f"{budget!r}. E.g. budget=0.05 for at most 5 %; pass preset=... without "
            "a budget to track at fixed intervals."
        )
    return float(budget)


class BudgetSchedule:
    """A budgeted quantity's schedule: due when the control's plan says so."""

    def __init__(self, control: BudgetControl, name: str):
        self.control = control
        self.name = name

    def __call__(self, step: int) -> bool:
        return self.name in self.control.due(step)

    def __repr__(self) -> str:
        return f"budget({self.control.budget:g})"


class BudgetControl:
    """Plans the budgeted quantities' intervals from the steps' measured wall time.

    Args:
        budget: The tracker's allowed share of the wall time, in (0, 1).
        uses: Budgeted quantity -> the engines it needs (``"per_sample"``,
            ``"curvature"``), in the order to calibrate them.
        rank: Quantity -> informativeness rank (0 best), see :func:`plan`.
        ladder: The intervals to choose from.

    """

    def __init__(
        self,
        budget: float,
        uses: Mapping[str, frozenset[str]],
        rank: Mapping[str, int],
        ladder: tuple[int, ...] = LADDER,
    ):
        self.budget = budget
        self.uses = dict(uses)
        self.rank = dict(rank)
        self.ladder = ladder
        self.period = max(ladder)
        assert all(self.period % k == 0 for k in ladder), (
            "the intervals must divide the longest"
        )
        names = list(uses)
        self.calibration = [frozenset(names)]
        for probe in calibration_probes(uses):
            self.calibration += [frozenset(), probe]
        self.calibration.append(frozenset())
        self._probe_sets = {probe for probe in self.calibration if probe}
        self.start = len(self.calibration)
        self.intervals = dict.fromkeys(names, max(ladder))
        self.costs: Costs | None = None
        self.scale = 1.0
        self.plain_seconds: float | None = None
        self.measured_share: float | None = None
        self.run_share: float | None = None
        self.planned_share: float | None = None
        self.planned_at: int | None = None
        self.over_budget = False
        self.changed = False
        self._baseline: deque[float] = deque(maxlen=_BASELINE_STEPS)
        self._baseline_cpu: deque[float | None] = deque(maxlen=_BASELINE_STEPS)
        self._last_engine: dict[str, float] = {}  # the last positive prices
        self._probes: dict[frozenset[str], deque[float]] = defaultdict(
            lambda: deque(maxlen=_PROBES)
        )
        # (tracked, wall, CPU, tracker's own seconds) of probes and of the period
        self._unpriced: list[tuple[frozenset[str], float, float | None, float]] = []
        self._window: list[tuple[frozenset[str], float, float | None, float]] = []
        self._window_writer = 0.0
        self._window_tracker = 0.0
        self._steps = 0  # the steps of the run measured so far (calibration too)
        self._spent = 0.0  # their extra seconds beyond as many plain steps
        self.writer_seconds: float | None = None
        self._tracked_counts: dict[str, int] = defaultdict(int)
        self._due_counts: dict[str, int] = defaultdict(int)
        self.reprobe: Reprobe | None = None

    def schedule(self, name: str) -> BudgetSchedule:
        """The schedule the quantity ``name`` gets."""
        return BudgetSchedule(self, name)

    def due(self, step: int) -> frozenset[str]:
        """The budgeted quantities due at ``step``."""
        if step < self.start:
            return self.calibration[step]
        offset = step - self.start
        if self.reprobe and offset % self.period == self.reprobe.offset:
            return self.reprobe.quantities
        if offset % _REFERENCE_EVERY == _REFERENCE_EVERY - 1:
            return frozenset()  # a reference step: plain training
        return frozenset(q for q, k in self.intervals.items() if offset % k == 0)

    def forget(self, name: str) -> None:
        """Stop planning for ``name`` (the tracker dropped it)."""
        self.uses.pop(name, None)
        self.intervals.pop(name, None)
        self.calibration = [s - {name} for s in self.calibration]
        self._probe_sets = {s - {name} for s in self._probe_sets} - {frozenset()}
        self._probes = defaultdict(
            self._probes.default_factory,
            {s: c for s, c in self._probes.items() if name not in s},
        )
        self._unpriced = [(s - {name}, *t) for s, *t in self._unpriced if s - {name}]
        if self.reprobe and name in self.reprobe.quantities:
            self.reprobe = None

    def observe(
        self,
        step: int,
        seconds: float,
        tracked: Iterable[str],
        writer_seconds: float = 0.0,
        tracker_seconds: float = 0.0,
        cpu_seconds: float | None = None,
    ) -> None:
        """Take step ``step``'s wall time, its tracked quantities, the writer's time.

        Host arithmetic only, called by the tracker at the next ``track()`` entry;
        re-plans when the calibration or a period has just ended.

        Args:
            step: The step observed.
            seconds: Its wall time, from its ``track()`` entry to the next.
            tracked: The quantities it tracked.
            writer_seconds: CPU seconds the log writer's thread spent in that time.
            tracker_seconds: The tracker's own wall seconds at that step. Of an
                untracked step ``track()``'s entry (choosing what is due, this
                bookkeeping): overhead, not part of the plain step. Of a tracked
                step its ``tracker_time`` (entry, exit, hooks): the floor of the
                step's extra seconds (:func:`step_extra`).
            cpu_seconds: CPU seconds the training thread spent in that time
                (``time.thread_time``), or None: priced by the wall time alone.

        """
        # The step's own time; a record written across several steps is taken
        # off the step it ends in, and counted once, in the period's extra time.
        seconds = max(seconds - writer_seconds, 0.0)
        tracked = frozenset(q for q in tracked if q in self.uses)
        for q in tracked:
            self._tracked_counts[q] += 1
        for q in self.due(step) & tracked:
            self._due_counts[q] += 1
        if not tracked:
            seconds = max(seconds - tracker_seconds, 0.0)
            # Not off the CPU time: tracker_seconds is wall time, which under load
            # can exceed the whole step's CPU time; the entry's CPU is microseconds.
            self._baseline.append(seconds)
            self._baseline_cpu.append(cpu_seconds)
            self._window_tracker += tracker_seconds
        own = tracker_seconds if tracked else 0.0
        if len(tracked) == 1 or tracked in self._probe_sets:
            self._unpriced.append((tracked, seconds, cpu_seconds, own))
        self._price_probes(least=min(_LOCAL_STEPS, 3))
        self._window.append((tracked, seconds, cpu_seconds, own))
        self._window_writer += writer_seconds
        following = step + 1 - self.start
        if following >= 0 and following % self.period == 0:
            self._replan(step + 1)

    def _price_probes(self, least: int) -> None:
        """Price the probes seen so far against the nearest untracked steps.

        A probe's extra seconds (:func:`step_extra`) are beyond the medians of the last
        ``_LOCAL_STEPS`` untracked steps, once there are ``least`` of them (step 0
        waits for the calibration's first untracked steps).
        """
        if len(self._baseline) < max(least, 1) or not self._unpriced:
            return
        local = PlainStep.of(
            list(self._baseline)[-_LOCAL_STEPS:],
            list(self._baseline_cpu)[-_LOCAL_STEPS:],
        )
        for tracked, seconds, cpu_seconds, own in self._unpriced:
            self._probes[tracked].append(step_extra(seconds, cpu_seconds, local, own))
        self._unpriced = []

    def _replan(self, at: int) -> None:
        self._price_probes(least=1)
        if not self._baseline or not self.uses:
            return
        plain = statistics.median(self._baseline)
        self.plain_seconds = plain
        probes = {s: statistics.median(c) for s, c in self._probes.items() if c}
        costs = attribute(probes, self.uses)
        engine = {e: c or self._last_engine.get(e, c) for e, c in costs.engine.items()}
        self._last_engine.update({e: c for e, c in engine.items() if c > 0})
        spans = {
            q: min(max(round(self._tracked_counts[q] / n), 1), 2)
            for q, n in self._due_counts.items()
            if n and q in self.uses
        }
        self.costs = Costs(costs.fixed, engine, costs.own, costs.uses, spans)
        if self._window:
            both = PlainStep.of(self._baseline, self._baseline_cpu)
            self._correct(both, calibration=at == self.start)
        scaled = self.costs.scaled(self.scale)
        allowed = allowance(self.budget, plain, self._steps, self._spent, self.period)
        self.intervals = plan(
            scaled, plain, self.budget, self.rank, self.ladder, allowed=allowed
        )
        planned = mean_cost(scaled, self.intervals, self.ladder)
        self.planned_share = planned / (plain + planned) if plain + planned else 0.0
        self.over_budget = planned > allowed_seconds(self.budget, plain)
        self.planned_at = at
        self.reprobe = self._choose_reprobe(scaled)
        self.changed = True

    def _choose_reprobe(self, costs: Costs) -> Reprobe | None:
        """The probed set to price once more, alone, in the coming period.

        Candidates are the probed sets (not step 0's everything) with fewer than
        ``_ROBUST`` probes that the new plan never tracks alone at any step of its
        period and could track more often (not all at the shortest interval); of
        those the dearest (``costs.of``), ties to the first in sorted order. Its
        offset in the period is the first non-reference step where nothing is due,
        else the period's last (reference) step.
        """
        everything = frozenset(self.uses)
        due = {
            o: frozenset(q for q, k in self.intervals.items() if o % k == 0)
            for o in range(self.period)
            if o % _REFERENCE_EVERY != _REFERENCE_EVERY - 1
        }
        shortest = min(self.ladder)
        candidates = [
            p
            for p in self._probe_sets
            if p != everything
            and len(self._probes.get(p, ())) < _ROBUST
            and p not in due.values()
            and any(self.intervals[q] > shortest for q in p)
        ]
        if not candidates:
            return None
        chosen = max(sorted(candidates, key=sorted), key=costs.of)
        empty = [o for o, tracked in due.items() if not tracked]
        return Reprobe(chosen, empty[0] if empty else self.period - 1)

    def _correct(self, plain_step: PlainStep, calibration: bool) -> None:
        """Measure the steps since the last plan; scale the costs by their error.

        The extra time of the window is, per set of tracked quantities, the median
        of its steps' extras (:func:`step_extra`), times their count (a slow
        step of the user's own, a validation pass, is an outlier there, not
        overhead), plus the writer's CPU seconds and ``track()``'s own seconds on
        untracked steps. It adds to the run's extra time. The ``calibration``
        window only adds: its probes priced the model, and the shares are logged
        from the first period on, so that none describes the calibration alone.
        """
        assert self.costs is not None
        plain = plain_step.wall
        by_set: dict[frozenset[str], list[float]] = defaultdict(list)
        for tracked, seconds, cpu, own in self._window:
            if tracked:
                by_set[tracked].append(step_extra(seconds, cpu, plain_step, own))
        measured = sum(len(s) * statistics.median(s) for s in by_set.values())
        measured += self._window_writer + self._window_tracker
        self._steps += len(self._window)
        self._spent += measured
        if not calibration:
            self.writer_seconds = self._window_writer / len(self._window)
            self.measured_share = _share(measured, plain * len(self._window))
            self.run_share = _share(self._spent, plain * self._steps)
            predicted = sum(len(s) * self.costs.of(q) for q, s in by_set.items())
            if predicted > 0 and measured > 0:
                self.scale = min(max(measured / predicted, 0.1), 10.0)
        self._window = []
        self._window_writer = self._window_tracker = 0.0

    def as_meta(self) -> dict[str, Any]:
        """The plan and what it rests on, for ``meta.json``'s ``budget``."""
        costs = self.costs
        return {
            "budget": self.budget,
            "ladder": list(self.ladder),
            "calibration_steps": self.start,
            "planned_at": self.planned_at,
            "intervals": dict(self.intervals),
            "plain_step_ms": _ms(self.plain_seconds),
            "writer_ms_per_step": _ms(self.writer_seconds),
            "cost_scale": self.scale,
            "costs_ms": None
            if costs is None
            else {
                "fixed": _ms(costs.fixed),
                "engine": {e: _ms(c) for e, c in costs.engine.items()},
                "own": {q: _ms(c) for q, c in costs.own.items()},
            },
            "planned_share": self.planned_share,
            "measured_share": self.measured_share,
            "run_share": self.run_share,
            "over_budget": self.over_budget,
            "reprobe": None
            if self.reprobe is None
            else {
                "quantities": sorted(self.reprobe.quantities),
                "step": self.planned_at + self.reprobe.offset,
            },
        }


@dataclass(frozen=True)
class Reprobe:
    """A probed set priced alone in the coming period, at ``offset`` steps into it."""

    quantities: frozenset[str]
    offset: int


def calibration_probes(uses: Mapping[str, frozenset[str]]) -> list[frozenset[str]]:
    """The probes after step 0: :func:`probe_sets` but the dearest engine group.

    Step 0 tracks everything; whatever engines the other probes leave unpriced, it
    prices (:func:`cockpit.budget.attribute`). So the group needing the most
    engines (the largest on a tie) is not probed again: under the economy preset
    the per-sample pass, which with ``alpha``'s second step would cost two more
    per-sample passes in the calibration.
    """
    probes = probe_sets(uses)
    groups = [p for p in probes if any(uses[q] for q in p)]
    if not groups:
        return probes

    def engines(probe: frozenset[str]) -> int:
        return len(frozenset().union(*(uses[q] for q in probe)))

    dearest = max(groups, key=lambda p: (engines(p), len(p), sorted(p)))
    return [p for p in probes if p != dearest]


def _share(extra: float, plain: float) -> float | None:
    """``extra / (plain + extra)``, or None with no time at all."""
    total = plain + extra
    return extra / total if total > 0 else None


def probe_sets(uses: Mapping[str, frozenset[str]]) -> list[frozenset[str]]:
    """Each quantity needing no engine alone, the others grouped by their engines."""
    groups: dict[frozenset[str], set[str]] = defaultdict(set)
    for name, engines in uses.items():
        groups[engines if engines else frozenset({name})].add(name)
    return [frozenset(members) for members in groups.values()]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000.0 * seconds, 3)
