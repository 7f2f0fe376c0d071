"""Each rule on synthetic records: it fires on its pattern, at the right steps, and
stays silent on short windows, missing quantities and non-finite values."""

from __future__ import annotations

import math

import pytest

from cockpit.diagnosis import diagnose
from tests.diagnosis.synthetic import META, layered, record, series


def rules(records: list[dict], meta: dict | None = None) -> dict:
    """Rule name -> alert of diagnosing ``records``."""
    alerts = diagnose(records, meta=META if meta is None else meta)
    return {a.rule: a for a in alerts}


def grads(values: list[float], layer_scale: float = 1.0) -> list[dict]:
    return series(
        "grad_norm",
        [layered(v, w0=v * layer_scale, b0=v, w2=v, b2=v) for v in values],
    )


def test_nonfinite_names_first_step_and_first_layer():
    ok = record(0, loss={"total": 1.0}, grad_norm=layered(1.0, w0=1, b0=1, w2=1, b2=1))
    bad = record(
        3,
        nonfinite=["loss.total", "grad_norm.total", "grad_norm.per_layer.0.weight"],
        loss={"total": None},
        grad_norm=layered(None, w0=None, b0=1.0, w2=None, b2=1.0),
    )
    later = dict(bad, step=7)
    alert = rules([ok, bad, later])["nonfinite"]
    assert alert.steps == (3, 7)
    assert alert.severity == "error"
    assert alert.layers == ("0.weight", "2.weight")
    assert "first layer (in the model's order) is 0.weight" in alert.explanation
    assert "loss" in alert.explanation.lower()


def test_nonfinite_gradient_alone_and_explained_nulls_elsewhere():
    only_grad = record(2, grad_norm=layered(1.0, w0=1.0, b0=None, w2=1.0, b2=1.0))
    alert = rules([only_grad])["nonfinite"]
    assert alert.layers == ("0.bias",) and alert.instrument == "loss"
    assert "gradient is not finite" in alert.explanation
    # Other quantities' nulls (e.g. an undefined noise scale) are not this rule's.
    noise = record(
        1,
        nonfinite=["gradient_noise_scale.total"],
        gradient_noise_scale={"total": None},
        loss={"total": 1.0},
    )
    assert rules([noise]) == {}


@pytest.mark.parametrize(
    ("late", "rule"), [(1000.0, "exploding_gradients"), (1e-5, "vanishing_gradients")]
)
def test_gradient_trends(late, rule):
    found = rules(grads([1.0] * 10 + [late] * 10))
    assert set(found) == {rule}
    assert found[rule].first_step == 10  # the first record of the newest window
    assert set(found[rule].layers) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # Not yet two windows of data: no trend is read.
    assert rules(grads([1.0] * 10 + [late] * 9)) == {}


def test_gradient_trend_of_one_layer_names_it():
    records = series(
        "grad_norm",
        [layered(1.0, w0=1.0, b0=1.0, w2=v, b2=1.0) for v in [1.0] * 10 + [500.0] * 10],
    )
    alert = rules(records)["exploding_gradients"]
    assert alert.layers == ("2.weight",)
    assert "2.weight most" in alert.explanation


def test_gradient_trend_ignores_nonfinite_values():
    values = [1.0] * 10 + [None] * 3 + [2.0] * 10
    records = series("grad_norm", [layered(v, w0=v, b0=v, w2=v, b2=v) for v in values])
    assert "exploding_gradients" not in rules(records)


def test_dead_layer_after_its_window():
    values = [
        layered(1.0, w0=1.0, b0=1.0, w2=0.0 if i >= 3 else 0.5, b2=1.0)
        for i in range(8)
    ]
    alert = rules(series("grad_norm", values))["dead_layer"]
    assert alert.layers == ("2.weight",)
    assert alert.steps == (3, 7)
    assert rules(series("grad_norm", values[:7])) == {}  # 4 zeros: not yet
    flicker = [layered(1.0, w0=1.0, b0=1.0, w2=float(i % 2), b2=1.0) for i in range(9)]
    assert rules(series("grad_norm", flicker)) == {}


@pytest.mark.parametrize(
    ("value", "rule"), [(1.5, "alpha_overshoot"), (-0.95, "alpha_small")]
)
def test_alpha(value, rule):
    values = [0.0] * 10 + [value] * 20
    alert = rules(series("alpha", values))[rule]
    assert alert.first_step == 10 and alert.last_step == 29
    assert alert.instrument == "alpha"
    assert rules(series("alpha", [value] * 19)) == {}
    assert rules(series("alpha", [0.3] * 30)) == {}  # a little above 0 is healthy


def eos(top: float, meta: dict, lr: float = 0.1, losses=None) -> dict:
    """Records of ``losses`` (default: doubling after 20), then ``hess_max_ev``."""
    losses = [1.0] * 20 + [2.0] * 20 if losses is None else losses
    out = [record(i, loss={"total": v}) for i, v in enumerate(losses)]
    top_record = record(
        len(out), lr=layered(lr), hess_max_ev={"total": top, "iterations": 3}
    )
    return rules([*out, top_record], meta)


def test_edge_of_stability_for_plain_sgd():
    above = eos(25.0, META)["edge_of_stability"]
    assert above.severity == "error" and "above" in above.explanation
    assert above.evidence["product"] == pytest.approx(2.5)
    assert "plain SGD" in above.explanation
    approaching = eos(17.0, META)["edge_of_stability"]
    assert (
        approaching.severity == "warning" and "approaching" in approaching.explanation
    )
    assert eos(10.0, META) == {}


def test_edge_of_stability_is_no_fault_while_the_loss_falls():
    falling = [1.0 - 0.01 * i for i in range(40)]
    assert eos(25.0, META, losses=falling) == {}
    # Flat, or a rise within the noise of mini-batch losses: no fault.
    assert eos(25.0, META, losses=[1.0] * 40) == {}
    assert eos(25.0, META, losses=[1.0] * 20 + [1.4] * 20) == {}
    # Fewer than 4 losses: the trend is unknown, nothing is said.
    assert eos(25.0, META, losses=[1.0, 5.0, 9.0]) == {}
    above = eos(25.0, META, losses=[2.3] * 5 + [6.0] * 6)["edge_of_stability"]
    assert above.evidence["loss_after"] == 6.0
    assert above.evidence["loss_before"] == 2.3


def test_edge_of_stability_limit_follows_the_optimizer():
    momentum = {**META, "optimizer": {"type": "SGD", "defaults": {"momentum": 0.9}}}
    assert eos(25.0, momentum) == {}  # 2.5 < 0.8 * 2 (1 + 0.9)
    assert eos(40.0, momentum)["edge_of_stability"].severity == "error"
    adam = {**META, "optimizer": {"type": "Adam", "defaults": {"lr": 0.1}}}
    assert eos(1000.0, adam) == {}
    no_lr = [record(0, hess_max_ev={"total": 1e6})]
    assert rules(no_lr) == {}
    assert eos(math.nan, META) == {}


def batch_records(value: float, n: int, **extra) -> list[dict]:
    return [
        record(
            i,
            norm_test=layered(value),
            inner_product_test=layered(0.5),
            orthogonality_test=layered(value),
            batch_size=2,
            **extra,
        )
        for i in range(n)
    ]


def test_small_batch_suggests_the_noise_scale():
    alert = rules(batch_records(40.0, 20, gradient_noise_scale=layered(512.0)))[
        "small_batch"
    ]
    assert alert.instrument == "gradient_tests"
    assert "about 512 (now 2)" in alert.suggestion
    assert "noise scale" in alert.suggestion
    cabs = rules(batch_records(40.0, 20, cabs={"total": 96.0}))["small_batch"]
    assert "about 96" in cabs.suggestion and "CABS" in cabs.suggestion
    plain = rules(batch_records(40.0, 20))["small_batch"]
    assert "larger batch" in plain.suggestion
    assert rules(batch_records(40.0, 19)) == {}
    assert rules(batch_records(2.0, 20)) == {}


def test_plateau_while_drifting():
    records = [
        record(i, loss={"total": 1.0 + 0.001 * (i % 2)}, distance=layered(1.0 + i / 40))
        for i in range(40)
    ]
    alert = rules(records)["plateau"]
    assert alert.first_step == 0 and alert.last_step == 39
    learning = [
        record(i, loss={"total": 2.0 - i / 40}, distance=layered(1.0 + i / 40))
        for i in range(40)
    ]
    assert "plateau" not in rules(learning)
    still = [record(i, loss={"total": 1.0}, distance=layered(1.0)) for i in range(40)]
    assert "plateau" not in rules(still)
    assert "plateau" not in rules(records[:39])


def test_early_stopping_crossing_zero():
    values = [layered(v) for v in [-1.0] * 6 + [0.5] * 5]
    alert = rules(series("early_stopping", values))["early_stopping"]
    assert alert.severity == "info" and alert.first_step == 6
    above_from_start = [layered(0.5)] * 10
    assert rules(series("early_stopping", above_from_start)) == {}


def overhead(tracker: float, step: float, n: int = 20) -> dict:
    return rules([record(i, tracker_time=tracker, step_time=step) for i in range(n)])


def test_tracker_overhead_budget():
    alert = overhead(0.4, 0.5)["tracker_overhead"]  # 0.4 s against 0.1 s: 4x
    assert alert.evidence["ratio"] == pytest.approx(4.0)
    assert overhead(0.1, 0.5) == {}  # 0.25x
    assert overhead(0.01, 0.011) == {}  # 10x, but 10 ms per step
    assert overhead(0.4, 0.5, n=19) == {}


def test_unnormalized_inputs_from_per_layer_gradients():
    # 0.weight has 32 elements, 2.weight 24: equal norms are about equal RMS.
    found = rules(grads([1.0] * 10, layer_scale=100.0))
    assert found["unnormalized_inputs"].layers == ("0.weight",)
    assert rules(grads([1.0] * 10, layer_scale=3.0)) == {}
    assert rules(grads([1.0] * 9, layer_scale=100.0)) == {}


def chance(n: int, loss: float = math.log(3), w2: float = 0.3) -> list[dict]:
    return [
        record(
            i,
            loss={"total": loss},
            grad_norm=layered(0.5, w0=0.3, b0=0.1, w2=w2, b2=0.1),
        )
        for i in range(n)
    ]


def test_loss_at_chance_after_the_first_window():
    alert = rules(chance(80))["loss_at_chance"]
    assert alert.first_step == 40 and alert.last_step == 79
    assert alert.evidence["classes"] == 3
    assert "log(3)" in alert.explanation
    assert rules(chance(79)) == {}
    assert rules(chance(80, loss=0.5)) == {}
    assert "loss_at_chance" not in rules(chance(80, w2=0.0))  # a dead layer instead
    mse = {**META, "loss": {"type": "MSELoss", "mean": True}}
    assert rules(chance(80), meta=mse) == {}


def test_small_batch_from_the_noise_scale_alone():
    records = [
        record(
            i, norm_test=layered(1.0), gradient_noise_scale=layered(24.0), batch_size=2
        )
        for i in range(20)
    ]
    alert = rules(records)["small_batch"]
    assert "12 times the batch size" in alert.explanation
    assert "about 24 (now 2)" in alert.suggestion
    healthy = [
        record(
            i,
            norm_test=layered(1.0),
            gradient_noise_scale=layered(150.0),
            batch_size=64,
        )
        for i in range(20)
    ]
    assert rules(healthy) == {}


def test_tracker_overhead_under_a_budget_reads_the_measured_share():
    meta = {**META, "budget": {"budget": 0.05}}
    within = [record(i, overhead_share=0.08) for i in range(25)]
    assert "tracker_overhead" not in rules(within, meta)
    over = [record(i, overhead_share=0.2) for i in range(25)]
    alert = rules(over, meta)["tracker_overhead"]
    assert alert.evidence == {"overhead_share": 0.2, "budget": 0.05}
    assert "20.0%" in alert.explanation
