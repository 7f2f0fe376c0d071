"""The overhead budget in the tracker: the default Cockpit, its plan and its log.

The control (:mod:`cockpit._budget`) is driven with made-up wall times whose plans
are worked out by hand; a default Cockpit trains a tiny model and its ``meta.json``
and records are checked; training stays bit-identical under the budget.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections import defaultdict

import pytest
import torch
from torch import nn

import cockpit
from cockpit._budget import BudgetControl, calibration_probes
from cockpit._setup import engine_uses, resolve_quantities
from cockpit.budget import LADDER
from cockpit.exceptions import ConfigurationError
from cockpit.quantities import PRESETS, GradNorm
from tests.test_training_unchanged import (
    MODELS,
    OPTIMIZERS,
    assert_bit_identical,
    make_data,
    train,
)

PER_SAMPLE = frozenset({"per_sample"})
USES = {"loss": frozenset(), "grad_norm": PER_SAMPLE, "norm_test": PER_SAMPLE}
PER_SAMPLE_Q = frozenset({"grad_norm", "norm_test"})
LOSS = frozenset({"loss"})


def drive(control: BudgetControl, steps: range, extra) -> list[float]:
    """Observe ``steps``, each 1 s plain plus ``extra(tracked)``; the durations."""
    seconds = []
    for step in steps:
        tracked = control.due(step)
        seconds.append(1.0 + extra(tracked))
        control.observe(step, seconds[-1], tracked)
    return seconds


def test_control_calibrates_plans_and_corrects_from_wall_times():
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    # Everything at step 0, which also prices the per-sample pass: the probes
    # after it are the engine-free quantities alone, between untracked steps.
    assert control.calibration == [frozenset(USES), frozenset(), LOSS, frozenset()]

    def modelled(tracked):  # fixed 0.01 s, the per-sample pass 0.5 s
        return (0.01 if tracked else 0.0) + (0.5 if tracked & PER_SAMPLE_Q else 0.0)

    drive(control, range(control.start), modelled)
    assert control.costs.fixed == pytest.approx(0.01)
    assert control.costs.engine == {"per_sample": pytest.approx(0.5)}
    # The calibration cost 0.51 + 0.01 s: a debt, but no share is logged yet.
    assert control.run_share is None and control.measured_share is None
    # Allowed: 0.05 / 0.95 = 0.0526 s per step, less the calibration's debt spread
    # over the next 50 steps: (54 * 0.0526 - 0.52) / 50 = 0.0464. loss every step
    # costs 0.01; the per-sample pair every 25th step 0.5 * 2 / 50 = 0.02 more;
    # every 10th 0.05 more would exceed it.
    assert control.intervals == {"loss": 1, "grad_norm": 25, "norm_test": 25}
    assert control.planned_at == control.start

    def doubled(tracked):  # the costs turn out twice the model's
        return 2 * modelled(tracked)

    steps = range(control.start, control.start + 50)
    due = [control.due(step) for step in steps]
    window = drive(control, steps, doubled)
    # Untracked steps took exactly the plain second, so no median hides anything.
    extra = sum(window) - 50 * 1.0
    assert control.measured_share == pytest.approx(extra / sum(window))
    assert control.run_share == pytest.approx((0.52 + extra) / (54 + 0.52 + extra))
    # Both probed sets ran again and re-priced the model (loss alone, and
    # everything at offsets 0 and 25), which now reproduces the period.
    scaled = control.costs.scaled(control.scale)
    assert sum(map(scaled.of, due)) == pytest.approx(extra)
    # Now the pair every 25th step would cost 0.02 + 0.08 > 0.0526.
    assert control.intervals == {"loss": 1, "grad_norm": 50, "norm_test": 50}
    # The last step of every 10 is left untracked, as the plain reference.
    assert [o for o in range(50) if not control.due(control.start + o)] == [
        9,
        19,
        29,
        39,
        49,
    ]


def test_the_calibrations_cost_is_repaid_by_a_sparser_first_plan():
    """A per-sample pass as dear as a plain step: the calibration is a debt.

    Calibration: step 0 (everything, 1.01 s extra) and the loss probe (0.01 s). Every
    25th step for the pair costs 0.01 + 2 * 1.0 / 50 = 0.05 s per step, within the
    steady 0.0526 s, but not within (54 * 0.0526 - 1.02) / 50 = 0.0364 s: the first
    plan waits 50 steps, and the run's share stays within the budget.
    """
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))

    def dear(tracked):
        return (0.01 if tracked else 0.0) + (1.0 if tracked & PER_SAMPLE_Q else 0.0)

    drive(control, range(control.start), dear)
    assert control.intervals == {"loss": 1, "grad_norm": 50, "norm_test": 50}
    drive(control, range(control.start, control.start + 50), dear)
    assert control.run_share <= 0.05


def outlier_run(control: BudgetControl, periods: int) -> list[dict[str, int]]:
    """Calibrate with one noisy loss probe (5 s), then true costs; plan per period.

    True costs on 1 s plain steps: 0.01 s fixed, the per-sample pass 0.3 s, the loss
    nothing more. The loss probe of the calibration alone reads 5 s extra (another
    process took the cores): priced at 5 s, the loss at 50 steps costs 10 % of the
    time, so the first plan is everything every 50 steps, over budget.
    """

    def extra(step, tracked):
        if step < control.start and tracked == LOSS:
            return 5.0
        return (0.01 if tracked else 0.0) + (0.3 if tracked & PER_SAMPLE_Q else 0.0)

    plans = []
    for step in range(control.start + periods * control.period):
        tracked = control.due(step)
        control.observe(step, 1.0 + extra(step, tracked), tracked)
        if control.planned_at == step + 1:
            plans.append(dict(control.intervals))
    return plans


def test_a_noisy_price_is_probed_again_when_the_plan_never_tracks_it_alone():
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    plans = outlier_run(control, periods=4)
    assert plans[0] == plans[1] == dict.fromkeys(USES, 50) and len(plans) == 5
    # Everything is due at a period's first step; the loss runs once more a period,
    # alone: the first re-probe takes the median of its probes to 2.5 s, the second
    # outvotes the noisy one. Then the loss runs every step and
    # the per-sample pass every 10th (0.01 + 0.3 / 10 = 0.04 s per step).
    assert plans[2]["loss"] == plans[-1]["loss"] == 1
    assert plans[-1]["grad_norm"] == plans[-1]["norm_test"] == 10
    assert control.costs.own["loss"] == pytest.approx(0.0, abs=1e-9)
    assert control.over_budget is False
    # A loss planned every step cannot run more often: nothing left to re-probe.
    assert control.reprobe is None
    # Without re-probes the noisy price stays in the model; the period's correction
    # scales every cost alike (down to its limit, 0.1x), and the loss never runs
    # more often than every 25th step, the per-sample pass neither.
    stuck = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    stuck._choose_reprobe = lambda costs: None
    plans = outlier_run(stuck, periods=8)
    assert all(min(p.values()) >= 25 for p in plans)


def test_a_reprobe_is_one_more_run_alone_and_stops_at_three_probes():
    """The re-probed set keeps its regular runs, so no gap between them grows."""
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    outlier_run(control, periods=1)
    reprobe = control.reprobe
    assert reprobe.quantities == LOSS and reprobe.offset == 1
    assert control.as_meta()["reprobe"] == {
        "quantities": ["loss"],
        "step": control.planned_at + 1,
    }
    period = range(control.planned_at, control.planned_at + control.period)
    runs = defaultdict(list)
    for step in period:
        for q in control.due(step):
            runs[q].append(step - control.planned_at)
    assert runs["loss"] == [0, 1]
    assert runs["grad_norm"] == runs["norm_test"] == [0]
    # Three probes of the loss (calibration and two re-probes) are enough: a plan
    # that never tracks it alone no longer re-probes it.
    control._probes[LOSS].extend([0.01, 0.01])
    assert control._choose_reprobe(control.costs) is None


def test_tracks_own_entry_on_untracked_steps_is_overhead():
    """1 s plain steps whose track() entry took 0.002 s: not plain, but overhead."""
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    for step in range(control.start + 50):
        tracked = control.due(step)
        entry = 0.0 if tracked else 0.002
        seconds = 1.0 + entry + (0.01 if tracked else 0.0)
        control.observe(step, seconds, tracked, tracker_seconds=entry)
    assert control.plain_seconds == pytest.approx(1.0)
    # The period: every quantity every step but offsets 9, 19, ...: 45 tracked
    # steps of 0.01 s, 5 untracked ones with 0.002 s of track() each.
    extra = 45 * 0.01 + 5 * 0.002
    assert control.measured_share == pytest.approx(extra / (50 + extra))


def test_economy_is_calibrated_with_two_per_sample_passes():
    """Step 0 and alpha's second step; the per-sample group is not probed again."""
    uses = engine_uses(resolve_quantities("economy", None))
    control = BudgetControl(0.05, uses, dict.fromkeys(uses, 0))
    needing = [s for s in control.calibration if any(uses[q] for q in s)]
    assert needing == [frozenset(uses)]
    alone = {q for s in control.calibration[1:] if len(s) == 1 for q in s}
    assert alone == {q for q, engines in uses.items() if not engines}
    # With a second engine, the per-sample pass is probed apart from step 0.
    business = engine_uses(resolve_quantities("business", None))
    groups = [s for s in calibration_probes(business) if any(business[q] for q in s)]
    engines = [frozenset().union(*(business[q] for q in s)) for s in groups]
    assert frozenset({"per_sample"}) in engines
    assert frozenset({"per_sample", "curvature"}) not in engines


def test_a_dropped_quantity_leaves_the_probed_sets():
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    control.forget("norm_test")
    assert control.calibration[0] == frozenset({"loss", "grad_norm"})
    # Step 0 tracked norm_test too before it was dropped: it still prices the pass.
    control.observe(0, 1.51, USES)
    control.observe(1, 1.0, ())
    control._price_probes(least=1)
    assert {s: list(c) for s, c in control._probes.items()} == {
        frozenset({"loss", "grad_norm"}): [0.51]
    }


def test_a_probe_is_priced_against_the_untracked_steps_around_it():
    """The load of a shared machine drifts: plain steps take 1 s, then 2 s.

    The loss probes run at the 2 s load; priced against the median of all recent
    untracked steps (1 s) they would cost 1.01 s each, against their neighbours
    0.01 s, as at calibration.
    """
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    drive(control, range(control.start), lambda tracked: 0.01 * bool(tracked))
    step = control.start
    for plain, tracked, count in ((1.0, (), 40), (2.0, (), 5), (2.01, LOSS, 5)):
        for _ in range(count):
            control.observe(step, plain, tracked)
            step += 1
    assert control.planned_at == step
    assert control.plain_seconds == 1.0  # the median of the last 25 untracked steps
    assert control.costs.fixed == pytest.approx(0.01)


def test_a_slow_step_of_the_users_own_is_not_overhead():
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    drive(control, range(control.start), lambda tracked: 0.01 * bool(tracked))
    # Every tracked step costs 0.01 s: all three every step fit 0.0526 s per step.
    assert set(control.intervals.values()) == {1}
    slow = control.start + 3
    seconds = iter(range(control.start, control.start + 50))

    def validating(tracked):  # step `slow` also runs 30 s of validation
        return 0.01 * bool(tracked) + (30.0 if next(seconds) == slow else 0.0)

    drive(control, range(control.start, control.start + 50), validating)
    # 45 tracked steps of 0.01 s (the median ignores the slow one), 5 reference steps.
    assert control.measured_share == pytest.approx(0.45 / (50 + 0.45))


def test_the_writers_seconds_count_as_overhead_not_as_the_plain_step():
    """The writer writes each record during the next step, tracked or not.

    Steps are 1 s plain; a tracked step adds 0.01 s of its own, and its record takes
    the writer 0.06 s of CPU during the following step, whose wall time grows by as
    much (few cores). Untracked steps then look 1.06 s long: taken as the plain
    step, the writer's cost would vanish from the measured share.
    """
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    writer, previous = 0.06, frozenset()
    for step in range(control.start + 50):
        tracked = control.due(step)
        spent = writer if previous else 0.0
        seconds = 1.0 + 0.01 * bool(tracked) + spent
        control.observe(step, seconds, tracked, writer_seconds=spent)
        previous = tracked
    assert control.plain_seconds == pytest.approx(1.0)
    # The period after calibration: every quantity every step but the reference
    # steps (offsets 9, 19, ...), so 45 tracked steps of 0.01 s, each followed by a
    # step of the period with 0.06 s of the writer.
    extra = 45 * 0.01 + 45 * writer
    assert control.measured_share == pytest.approx(extra / (50 + extra))
    assert control.writer_seconds == pytest.approx(45 * writer / 50)
    # 0.063 s per step is over the 0.0526 s allowed: the new plan is sparser.
    assert max(control.intervals.values()) > 1
    assert control.planned_share <= 0.05


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def train_steps(ck, model, steps):
    loss_fn, gen = ck.loss_fn, torch.Generator().manual_seed(3)
    for _ in range(steps):
        x, y = (
            torch.randn(16, 4, generator=gen),
            torch.randint(0, 3, (16,), generator=gen),
        )
        ck.optimizer.zero_grad()
        with ck.track():
            loss_fn(model(x), y).backward()
        ck.optimizer.step()
    ck.close()
    records = cockpit.LogReader(ck.run_dir).read_new()
    meta = json.loads((ck.run_dir / "meta.json").read_text())
    return records, meta


def logged(records, key):
    return sorted({r["step"] for r in records if key in r["values"]})


def test_default_cockpit_follows_economy_under_the_budget(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(model, nn.CrossEntropyLoss(), optimizer, logdir=tmp_path)
    start = ck._budget.start
    steps = start + 50 + 3
    records, meta = train_steps(ck, model, steps)
    assert meta["preset"] == "economy"
    assert set(meta["quantities"]) == set(PRESETS["economy"])
    assert set(meta["quantities"].values()) == {"budget(0.05)"}
    plan = meta["budget"]
    assert plan["budget"] == 0.05
    assert plan["planned_at"] == start + 50  # planned after calibration, re-planned
    assert set(plan["intervals"]) == set(PRESETS["economy"])
    assert set(plan["intervals"].values()) <= set(LADDER)
    assert plan["plain_step_ms"] > 0 and plan["costs_ms"]["engine"]["per_sample"] >= 0
    # The training thread's CPU time reached the control for every plain step.
    cpu = list(ck._budget._baseline_cpu)
    assert cpu and all(c is not None and c > 0 for c in cpu)
    assert plan["writer_ms_per_step"] > 0  # the writer's CPU time is counted
    shares = {
        r["values"]["overhead_share"]
        for r in records
        if r["step"] >= start + 50 and "overhead_share" in r["values"]
    }
    assert shares == {plan["run_share"]}  # the run's share, calibration included
    assert not any(
        "overhead_share" in r["values"] for r in records if r["step"] < start
    )
    for key in PRESETS["economy"]:
        at = logged(records, key)
        assert at[0] == 0, key
        gaps = [b - a for a, b in itertools.pairwise([*at, steps - 1])]
        assert max(gaps) <= max(LADDER), key
    # Not every step: calibration leaves steps untracked for the plain reference.
    assert len(logged(records, "grad_norm")) < steps


def test_a_tracked_steps_own_seconds_reach_the_control_as_its_floor(tmp_path):
    """The control gets each tracked step's ``tracker_time`` (its entry, exit and
    hooks; the optimizer's step hooks add to the logged value after it)."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(model, nn.CrossEntropyLoss(), optimizer, logdir=tmp_path)
    observed, observe = {}, ck._budget.observe

    def spy(step, seconds, tracked, writer_seconds=0.0, tracker_seconds=0.0, cpu=None):
        observed[step] = (frozenset(tracked), tracker_seconds)
        observe(step, seconds, tracked, writer_seconds, tracker_seconds, cpu)

    ck._budget.observe = spy
    records, _ = train_steps(ck, model, ck._budget.start + 5)
    logged_time = {  # alpha's record of the step before is the other kind
        r["step"]: r["values"]["tracker_time"]
        for r in records
        if "tracker_time" in r["values"]
    }
    tracked = {step for step, (names, _) in observed.items() if names}
    assert len(tracked) > 2 and tracked == set(logged_time) & set(observed)
    for step in tracked:
        assert 0 < observed[step][1] <= logged_time[step]


def test_explicit_schedules_keep_their_meaning_under_a_budget(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit.Cockpit(
        model,
        nn.CrossEntropyLoss(),
        optimizer,
        logdir=tmp_path,
        quantities={"loss": 1, "grad_norm": GradNorm()},
        budget=0.2,
    )
    records, meta = train_steps(ck, model, 8)
    assert list(meta["budget"]["intervals"]) == ["grad_norm"]
    assert meta["quantities"] == {
        "loss": "every(k=1, start=0)",
        "grad_norm": "budget(0.2)",
    }
    assert logged(records, "loss") == list(range(8))

    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plain = cockpit.Cockpit(
        model, nn.CrossEntropyLoss(), optimizer, logdir=tmp_path, preset="economy"
    )
    records, meta = train_steps(plain, plain.model, 3)
    assert meta["budget"] is None
    assert logged(records, "grad_norm") == [0, 1, 2]


@pytest.mark.parametrize(
    ("budget", "match"),
    [(1.5, r"budget must be in \(0, 1\).*got 1.5"), ("5%", "must be a number")],
)
def test_bad_budget_says_what_to_pass(tmp_path, budget, match):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match=match):
        cockpit.Cockpit(
            model, nn.CrossEntropyLoss(), optimizer, logdir=tmp_path, budget=budget
        )


def test_training_unchanged_under_the_default_budget(tmp_path):
    """Calibration's tracked and untracked steps alike leave training unchanged."""
    torch.manual_seed(0)
    model = MODELS["mlp"]()
    twin = copy.deepcopy(model)
    batches = make_data("mlp", "ce-mean")
    case = OPTIMIZERS["sgd"]
    tracked = train(model, nn.CrossEntropyLoss(), case, batches, {"logdir": tmp_path})
    untracked = train(twin, nn.CrossEntropyLoss(), case, batches, None)
    assert_bit_identical(tracked, untracked)


def exact_plans(report) -> list[tuple]:
    """The plans over exact clocks: steps of 1 s plain, tracked ones 0.01 s more and
    0.2 s per per-sample pass (twice that after calibration), each observed with
    the keywords ``report(seconds, tracked)`` returns."""
    control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
    plans = []
    for step in range(control.start + 150):
        tracked = control.due(step)
        added = (0.01 if tracked else 0.0) + (0.2 if tracked & PER_SAMPLE_Q else 0.0)
        seconds = 1.0 + added * (2.0 if step > control.start else 1.0)
        control.observe(step, seconds, tracked, **report(seconds, tracked))
        if control.changed:
            control.changed = False
            plans.append((dict(control.intervals), control.as_meta()))
    return plans


def test_a_cpu_clock_that_agrees_with_the_wall_changes_no_plan():
    """An idle CPU: the thread's CPU time equals the wall time; plans as before."""
    plans = exact_plans(lambda seconds, tracked: {"cpu_seconds": seconds})
    assert len(plans) == 4  # the calibration's plan and three periods'
    assert plans == exact_plans(lambda seconds, tracked: {})


def noisy_run(control: BudgetControl, steps: int, seed: int, with_cpu: bool):
    """Steps of 0.1 s of CPU, tracked ones 0.002 s more and 0.03 s per per-sample
    pass, each stretched by a load factor drawn log-uniformly from 1 to 10 (other
    processes on a shared machine). The engine's price at each plan, the CPU seconds
    the tracker added and the plain CPU seconds."""
    rng = random.Random(seed)
    prices, extra = [], 0.0
    for step in range(steps):
        tracked = control.due(step)
        added = (0.002 if tracked else 0.0) + (0.03 if tracked & PER_SAMPLE_Q else 0.0)
        cpu = 0.1 + added
        extra += added
        load = 10 ** rng.random()
        control.observe(
            step, cpu * load, tracked, cpu_seconds=cpu if with_cpu else None
        )
        if control.changed:
            control.changed = False
            prices.append(control.costs.engine["per_sample"])
    return prices, extra, 0.1 * steps


def test_a_tenfold_noisy_wall_clock_never_prices_the_per_sample_pass_at_0():
    """Wall times that vary tenfold from step to step: the CPU clock keeps the price
    of the per-sample pass above 0 and the run within the budget."""
    steps = 600
    for seed in range(3):
        control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
        prices, extra, plain = noisy_run(control, steps, seed, with_cpu=True)
        assert len(prices) == 1 + (steps - control.start) // 50
        assert min(prices) > 0
        # The tracker's true share of the time, calibration included, stays within
        # the budget (the load stretches plain and tracked work alike).
        assert extra / (plain + extra) <= 0.05
        # Every quantity waits at most 50 steps; loss (no engine) runs more often.
        assert max(control.intervals.values()) <= 50
        assert control.intervals["loss"] < 50
    # The same noise priced by the wall clock alone: the weakness this guards
    # against shows in these runs (an engine priced at 0 from the first plan on,
    # which the last positive price cannot replace).
    zero = []
    for seed in range(3):
        control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
        prices, *_ = noisy_run(control, steps, seed, with_cpu=False)
        zero.append(min(prices) == 0)
    assert any(zero)


def cheap_noise_run(control: BudgetControl, steps: int, seed: int):
    """Steps of 0.1 s of CPU; a tracked step adds 0.01 s of the tracker's own code
    (10 % of the step: ``fixed``) and 0.1 s per per-sample pass. Both clocks are
    noisy: the load stretches each step's wall time 1x to 10x (log-uniform), and
    the thread's CPU time of a tracked step reads 0.01 s low (the plain part of it
    landed at a light moment), so its CPU extra prices ``fixed`` at 0 (and the
    engine 0.01 s low: the floor does not fix that). The tracker reports its own
    wall seconds, 0.01 s at that step's stretch. Returns the tracker's true CPU
    seconds, the plain CPU seconds, each probe's floor by tracked set, and the
    costs and planned share of each plan."""
    rng = random.Random(seed)
    extra, floors, plans = 0.0, defaultdict(list), []
    for step in range(steps):
        tracked = control.due(step)
        added = (0.01 if tracked else 0.0) + (0.1 if tracked & PER_SAMPLE_Q else 0.0)
        extra += added
        load = 10 ** rng.random()
        cpu = (0.09 if tracked else 0.1) + added
        own = 0.01 * load if tracked else 0.0
        floors[tracked].append(own)
        control.observe(step, cpu * load, tracked, tracker_seconds=own, cpu_seconds=cpu)
        if control.changed:
            control.changed = False
            plans.append((control.costs, control.planned_share))
    return extra, 0.1 * steps, floors, plans


def test_noise_pricing_cheap_steps_at_0_is_floored_by_the_trackers_own_seconds():
    """Without the floor these clocks price ``fixed`` and ``loss`` at 0, the plans
    track loss at every step, and the run costs 11.5 % where 5 % is allowed."""
    steps = 400
    for seed in range(3):
        control = BudgetControl(0.05, USES, dict.fromkeys(USES, 0))
        extra, plain, floors, plans = cheap_noise_run(control, steps, seed)
        assert len(plans) == 1 + (steps - control.start) // 50
        for costs, planned_share in plans:
            # Every probed set priced at or above its probes' least own seconds.
            for tracked in (LOSS, frozenset(USES)):
                assert costs.of(tracked) >= min(floors[tracked])
            assert costs.fixed > 0
            assert planned_share <= 0.05
        assert control.intervals["loss"] > 1
        # The tracker's true share of the CPU time, calibration included.
        assert extra / (plain + extra) <= 0.05


def test_a_floor_below_noise_free_prices_changes_no_plan():
    """Exact clocks: the tracker's own seconds (half of each tracked step's extra)
    are below every price, and the plans are those without them."""

    def half_the_extra(seconds, tracked):
        return {"tracker_seconds": (seconds - 1.0) / 2 if tracked else 0.0}

    plans = exact_plans(half_the_extra)
    assert len(plans) == 4
    assert plans == exact_plans(lambda seconds, tracked: {})
