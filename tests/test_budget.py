"""The overhead budget's planner (:mod:`cockpit.budget`) on made-up costs.

The mean cost of a plan is checked against a brute-force count over the steps of one
period; the plans' properties (budget respected, every quantity at most every
``max(LADDER)`` steps, cheaper first, no rung left to take) on random costs.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cockpit.budget import (
    LADDER,
    Costs,
    allowance,
    allowed_seconds,
    attribute,
    mean_cost,
    plan,
)

NAMES = ("a", "b", "c", "d", "e")
ENGINES = ("per_sample", "curvature")


def brute_force_mean(costs: Costs, intervals: dict[str, int], steps: int) -> float:
    """Mean of ``cost(due(s))`` over ``steps`` steps, the due sets listed one by one."""
    total = 0.0
    for step in range(steps):
        # Periodic: a quantity spanning two steps due at 0 also runs at step -1 + 1.
        due = {
            q
            for q, k in intervals.items()
            if any((step - o) % k == 0 for o in range(costs.span.get(q, 1)))
        }
        total += costs.of(due)
    return total / steps


costs_strategy = st.builds(
    lambda fixed, engine, own, uses, span: Costs(
        fixed,
        dict(zip(ENGINES, engine, strict=True)),
        dict(zip(NAMES, own, strict=True)),
        {
            q: frozenset(e for e, on in zip(ENGINES, u, strict=True) if on)
            for q, u in zip(NAMES, uses, strict=True)
        },
        {q: s for q, s in zip(NAMES, span, strict=True)},
    ),
    st.floats(0.0, 1.0),
    st.lists(st.floats(0.0, 5.0), min_size=2, max_size=2),
    st.lists(st.floats(0.0, 5.0), min_size=5, max_size=5),
    st.lists(st.lists(st.booleans(), min_size=2, max_size=2), min_size=5, max_size=5),
    st.lists(st.integers(1, 2), min_size=5, max_size=5),
)
intervals_strategy = st.lists(st.sampled_from(LADDER), min_size=5, max_size=5).map(
    lambda ks: dict(zip(NAMES, ks, strict=True))
)


@settings(max_examples=60, deadline=None)
@given(costs_strategy, intervals_strategy)
def test_mean_cost_counts_every_step_of_the_period(costs, intervals):
    expected = brute_force_mean(costs, intervals, 50)
    assert abs(mean_cost(costs, intervals) - expected) <= 1e-9 * (1 + expected)


def test_shared_engine_is_paid_once_per_step():
    costs = Costs(
        1.0,
        {"per_sample": 10.0},
        {"a": 2.0, "b": 3.0},
        {"a": frozenset({"per_sample"}), "b": frozenset({"per_sample"})},
    )
    # Both every 10th step, aligned: one step in 10 pays 1 + 10 + 2 + 3.
    assert mean_cost(costs, {"a": 10, "b": 10}) == (1 + 10 + 2 + 3) / 10
    # a every 5th: steps 0, 10, ... pay everything, steps 5, 15, ... 1 + 10 + 2.
    assert mean_cost(costs, {"a": 5, "b": 10}) == (16 + 13) / 10


@settings(max_examples=80, deadline=None)
@given(costs_strategy, st.floats(0.01, 10.0), st.floats(0.01, 0.5))
def test_plan_respects_the_budget_and_the_longest_interval(costs, step, budget):
    intervals = plan(costs, step, budget)
    assert set(intervals) == set(costs.own)
    assert all(k in LADDER for k in intervals.values())
    longest = {q: max(LADDER) for q in costs.own}
    if mean_cost(costs, longest) <= allowed_seconds(budget, step):
        assert mean_cost(costs, intervals) <= allowed_seconds(budget, step) * (
            1 + 1e-12
        )
    else:
        assert intervals == longest  # over budget: nothing runs more often


@settings(max_examples=80, deadline=None)
@given(costs_strategy, st.floats(0.01, 10.0), st.floats(0.01, 0.5))
def test_no_quantity_can_run_more_often_within_the_budget(costs, step, budget):
    intervals = plan(costs, step, budget)
    allowed = allowed_seconds(budget, step)
    for q, k in intervals.items():
        if k == min(LADDER):
            continue
        shorter = LADDER[LADDER.index(k) - 1]
        assert mean_cost(costs, {**intervals, q: shorter}) > allowed


@settings(max_examples=80, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.floats(0.0, 5.0),
    st.lists(st.floats(0.0, 5.0), min_size=5, max_size=5, unique=True),
    st.floats(0.05, 10.0),
    st.floats(0.01, 0.5),
)
def test_cheaper_quantities_run_at_least_as_often(fixed, engine, own, step, budget):
    uses = dict.fromkeys(NAMES, frozenset({"per_sample"}))
    costs = Costs(
        fixed, {"per_sample": engine}, dict(zip(NAMES, own, strict=True)), uses
    )
    intervals = plan(costs, step, budget)
    for cheap in NAMES:
        for dear in NAMES:
            if costs.own[cheap] < costs.own[dear]:
                assert intervals[cheap] <= intervals[dear]


def test_more_informative_quantities_go_first_at_equal_cost():
    costs = Costs(0.0, {}, {"economy": 1.0, "full": 1.0})
    # Both every 50th step cost 0.04 per step, one every 25th 0.06, both 0.08:
    # allowing 0.07 leaves room for one of them only.
    budget = 0.07 / 1.07
    intervals = plan(costs, 1.0, budget, rank={"economy": 0, "full": 2})
    assert intervals == {"economy": 25, "full": 50}
    swapped = plan(costs, 1.0, budget, rank={"economy": 2, "full": 0})
    assert swapped == {"economy": 50, "full": 25}


def test_a_larger_budget_never_lengthens_an_interval():
    costs = Costs(
        0.1,
        {"per_sample": 2.0},
        {"a": 0.0, "b": 0.5, "c": 3.0},
        {
            "a": frozenset(),
            "b": frozenset({"per_sample"}),
            "c": frozenset({"per_sample"}),
        },
    )
    tight, loose = plan(costs, 1.0, 0.05), plan(costs, 1.0, 0.5)
    assert all(loose[q] <= tight[q] for q in costs.own)
    assert loose != tight


def test_attribute_splits_probes_into_fixed_engine_and_own():
    uses = {
        "loss": frozenset(),
        "distance": frozenset(),
        "grad_norm": frozenset({"per_sample"}),
        "norm_test": frozenset({"per_sample"}),
        "hess_trace": frozenset({"per_sample", "curvature"}),
    }
    probes = {
        frozenset({"loss"}): 1.0,
        frozenset({"distance"}): 3.0,
        frozenset({"grad_norm", "norm_test"}): 11.0,
        frozenset({"grad_norm"}): 9.0,
        frozenset({"hess_trace"}): 30.0,
    }
    costs = attribute(probes, uses)
    assert costs.fixed == 1.0
    assert costs.engine == {"per_sample": 8.0, "curvature": 21.0}
    assert costs.own == {
        "loss": 0.0,
        "distance": 2.0,
        "grad_norm": 0.0,
        "norm_test": 2.0,  # probed only in its group: what grad_norm leaves of it
        "hess_trace": 0.0,
    }
    # The model reproduces every probe, the group's too.
    for probe in probes:
        assert costs.of(probe) == probes[probe]


def test_attribute_turns_noise_below_zero_into_zero():
    costs = attribute(
        {frozenset({"a"}): 2.0, frozenset({"b"}): 1.0},
        {"a": frozenset(), "b": frozenset({"per_sample"})},
    )
    assert costs.engine == {"per_sample": 0.0}
    assert costs.own == {"a": 0.0, "b": 0.0}


def test_attribute_prices_the_engine_from_step_0_net_of_the_probed_quantities():
    """Step 0 tracks everything; the engine-free quantities were probed alone.

    Made-up seconds: fixed 1, loss 0 and distance 2 of their own, the per-sample
    pass 20, ``alpha`` 4 and ``norm_test`` 6 of their own beyond it (alpha probed
    alone, ``norm_test`` only in step 0).
    """
    uses = {
        "loss": frozenset(),
        "distance": frozenset(),
        "alpha": frozenset({"per_sample"}),
        "norm_test": frozenset({"per_sample"}),
    }
    everything = frozenset(uses)
    probes = {
        frozenset({"loss"}): 1.0,
        frozenset({"distance"}): 1.0 + 2.0,
        frozenset({"alpha"}): 1.0 + 20.0 + 4.0,
        everything: 1.0 + 2.0 + 20.0 + 4.0 + 6.0,
    }
    costs = attribute(probes, uses)
    # alpha alone is the cheaper probe of the engine: it prices the pass with its
    # own 4 s inside, and step 0 leaves norm_test the rest, 6 s.
    assert costs.engine == {"per_sample": 24.0}
    assert costs.own == {"loss": 0.0, "distance": 2.0, "alpha": 0.0, "norm_test": 6.0}
    # The engine is not charged the distance probed alone: each probe reproduced.
    for probe, seconds in probes.items():
        assert costs.of(probe) == seconds
    # Noise: step 0 cheaper than alpha's own step. Step 0 prices the engine, alpha
    # keeps its rest; step 0 is then priced dear, never cheap.
    probes[frozenset({"alpha"})] = 40.0
    costs = attribute(probes, uses)
    assert costs.engine == {"per_sample": 30.0}  # 33 - 1 - 2 (distance's own)
    assert costs.own["alpha"] == 9.0 and costs.own["norm_test"] == 0.0
    assert costs.of(frozenset({"alpha"})) == 40.0
    assert costs.of(everything) > probes[everything]


def test_allowance_repays_what_the_run_spent_beyond_the_budget():
    steady = allowed_seconds(0.05, 1.0)  # 1 / 19 s per step
    # Nothing spent yet: the steady allowance; savings are not spent later.
    assert allowance(0.05, 1.0, steps=10, spent=0.0, period=50) == steady
    # 12 calibration steps that cost 1.2 s: the next 50 steps may cost what keeps
    # the 62 steps' extra at 62 * steady.
    owed = allowance(0.05, 1.0, steps=12, spent=1.2, period=50)
    assert owed == (62 * steady - 1.2) / 50
    assert 0 < owed < steady
    # The run's share after the period is then exactly the budget.
    extra = 1.2 + 50 * owed
    assert extra / (62 * 1.0 + extra) == pytest.approx(0.05)
    # A debt beyond the next period's whole allowance: nothing but the floor.
    assert allowance(0.05, 1.0, steps=12, spent=10.0, period=50) == 0.0


@settings(max_examples=40, deadline=None)
@given(costs_strategy, st.floats(0.01, 10.0), st.floats(0.0, 1.0))
def test_plan_within_a_smaller_allowance_is_never_denser(costs, step, fraction):
    full = plan(costs, step, 0.1)
    allowed = fraction * allowed_seconds(0.1, step)
    tight = plan(costs, step, 0.1, allowed=allowed)
    longest = {q: max(LADDER) for q in costs.own}
    if mean_cost(costs, longest) <= allowed:
        assert mean_cost(costs, tight) <= allowed * (1 + 1e-12)
    else:
        assert tight == longest
    assert mean_cost(costs, tight) <= mean_cost(costs, full) * (1 + 1e-12)


def test_no_allowance_keeps_the_floor_even_for_quantities_priced_free():
    """Probes priced 0 (noise): with a debt to repay, still nothing but the floor."""
    free = Costs(0.0, {"per_sample": 0.0}, {"a": 0.0, "b": 0.0})
    assert plan(free, 1.0, 0.05) == {"a": 1, "b": 1}
    assert plan(free, 1.0, 0.05, allowed=0.0) == {"a": 50, "b": 50}
