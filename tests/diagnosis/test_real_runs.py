"""Digits runs broken on purpose raise the expected alerts at the right steps, and
only those; healthy runs of the examples' setups raise none.

Each run trains once per module (``runs`` fixture). ``tracker_overhead`` is left
out of the comparisons: it reads wall-clock times, which depend on the machine's
load, not on the run (its rule is tested on synthetic records).
"""

from __future__ import annotations

import pytest

from cockpit.diagnosis import Alert, diagnose
from tests.diagnosis.runs import RECIPES, train

#: Run -> the rules it must raise, and no others.
EXPECTED = {
    "healthy_mlp": set(),
    "healthy_cnn": set(),
    "detached": {"dead_layer"},
    "nan_at_30": {"nonfinite"},
    "dead_relus": {"dead_layer"},
    "batch_of_2": {"small_batch", "plateau"},
    "shuffled_labels": {"loss_at_chance", "small_batch", "plateau"},
    "lr_too_high": {
        "edge_of_stability",
        "dead_layer",
        "vanishing_gradients",
        "plateau",
    },
    "plateau": {"plateau"},
    "raw_inputs": {"unnormalized_inputs"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, Alert]]:
    """Rule -> alert of every recipe, each trained once."""
    logdir = tmp_path_factory.mktemp("diagnosis-runs")
    found = {}
    for name, recipe in RECIPES.items():
        alerts = diagnose(train(recipe, logdir, name))
        found[name] = {a.rule: a for a in alerts if a.rule != "tracker_overhead"}
    return found


@pytest.mark.parametrize("name", list(EXPECTED))
def test_expected_alerts_and_only_those(runs, name):
    assert set(runs[name]) == EXPECTED[name]


def test_nan_names_its_step_and_the_first_layer(runs):
    alert = runs["nan_at_30"]["nonfinite"]
    assert alert.steps == (30, 39)
    assert alert.layers[0] == "1.weight"


def test_detached_layer_is_named_from_the_start(runs):
    alert = runs["detached"]["dead_layer"]
    assert alert.layers == ("unused.weight", "unused.bias")
    assert alert.first_step == 0


def test_dead_relus_name_the_layers_behind_them(runs):
    assert {"1.weight", "1.bias"} <= set(runs["dead_relus"]["dead_layer"].layers)


def test_too_high_learning_rate_is_above_the_limit_once_the_loss_stalls(runs):
    alert = runs["lr_too_high"]["edge_of_stability"]
    # The first solve above the limit once the loss rose (step 10: loss 2.3 -> 13).
    assert alert.severity == "error" and alert.first_step <= 15
    assert "plain SGD" in alert.explanation
    assert "loss rises" in alert.explanation


def test_small_batch_suggests_a_larger_one(runs):
    alert = runs["batch_of_2"]["small_batch"]
    assert "(now 2)" in alert.suggestion


def test_shuffled_labels_found_after_the_first_window(runs):
    alert = runs["shuffled_labels"]["loss_at_chance"]
    assert alert.first_step >= 40 and alert.evidence["classes"] == 10


def test_raw_pixels_are_found_from_the_input_scale(runs):
    alert = runs["raw_inputs"]["unnormalized_inputs"]
    # Digits as 0-16 pixels: root mean square about 7.7 (0.48 once divided by 16).
    assert 6.0 < alert.evidence["input_rms"] < 10.0
    assert alert.first_step == 0 and alert.instrument == "input_scale"
