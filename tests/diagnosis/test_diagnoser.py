"""The engine: incremental feeding, alerts raised once, thresholds, run directories."""

from __future__ import annotations

import math

import pytest

from cockpit.diagnosis import THRESHOLDS, Alert, Diagnoser, at_least, diagnose
from cockpit.exceptions import ConfigurationError
from cockpit.logs import RunWriter
from tests.diagnosis.synthetic import META, layered, record


def run_records() -> list[dict]:
    """A loss that goes NaN at step 12, after alpha overshoots from step 0."""
    out = []
    for step in range(25):
        loss = None if step >= 12 else 1.0
        values = {"loss": {"total": loss}, "alpha": 2.0, "grad_norm": layered(1.0)}
        out.append(record(step, ["loss.total"] if loss is None else None, **values))
    return out


def test_feeding_one_at_a_time_equals_all_at_once_and_raises_each_alert_once():
    whole = diagnose(run_records(), meta=META)
    diagnoser = Diagnoser(META)
    raised = []
    for one in run_records():
        raised += diagnoser.feed([one])
    assert [a.rule for a in raised] == ["nonfinite", "alpha_overshoot"]
    assert [a.to_dict() for a in diagnoser.alerts] == [a.to_dict() for a in whole]
    nonfinite = next(a for a in whole if a.rule == "nonfinite")
    assert nonfinite.steps == (12, 24)
    assert diagnoser.feed([]) == []


def test_thresholds_override_by_name_and_unknown_names_are_refused():
    assert THRESHOLDS["alpha_high"].value == 1.0
    records = [record(i, alpha=0.6) for i in range(20)]
    assert diagnose(records, meta=META) == []
    lowered = diagnose(records, meta=META, thresholds={"alpha_high": 0.5})
    assert [a.rule for a in lowered] == ["alpha_overshoot"]
    with pytest.raises(ConfigurationError, match="Unknown diagnosis threshold 'alpha'"):
        Diagnoser(META, thresholds={"alpha": 1})


def test_every_threshold_names_its_rule():
    from cockpit.diagnosis import RULES

    names = {rule.name for rule in RULES}
    for name, threshold in THRESHOLDS.items():
        assert set(threshold.rule.split(", ")) <= names, name
        assert threshold.meaning


def test_diagnose_a_run_directory(tmp_path):
    with RunWriter(tmp_path / "run", META) as writer:
        for one in run_records():
            writer.submit(one)
    alerts = diagnose(tmp_path / "run")
    assert {a.rule for a in alerts} == {"nonfinite", "alpha_overshoot"}
    assert all(a.run == "run" for a in alerts)


def test_records_without_step_or_with_errors_are_skipped():
    diagnoser = Diagnoser(META)
    junk = [{"step": 3, "values": {}, "error": "boom"}, {"values": {"loss": math.nan}}]
    assert diagnoser.feed(junk) == []


def test_alert_round_trip_and_severity_order():
    alert = diagnose(run_records(), meta=META)[0]
    assert Alert.from_dict(alert.to_dict()) == alert
    assert alert.where() == "steps 0-24"
    assert at_least("error", "warning") and not at_least("info", "warning")


def test_readme_lists_every_rule():
    from pathlib import Path

    from cockpit.diagnosis import RULES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Diagnosis", 1)[1].split("\n## ", 1)[0]
    for rule in RULES:
        assert f"| `{rule.name}` |" in section, rule.name


def test_an_alert_ends_when_its_rule_no_longer_finds_the_condition():
    alphas = [3.0] * 20 + [0.1] * 30
    diagnoser = Diagnoser(META)
    diagnoser.feed(record(i, alpha=a) for i, a in enumerate(alphas[:25]))
    (alert,) = diagnoser.alerts
    assert alert.rule == "alpha_overshoot" and alert.ongoing
    diagnoser.feed(record(i, alpha=a) for i, a in enumerate(alphas[25:], start=25))
    (alert,) = diagnoser.alerts
    assert not alert.ongoing and alert.last_step < 49
    assert alert.where().endswith(", ended")
    # The condition comes back: the same alert holds again.
    diagnoser.feed(record(i, alpha=3.0) for i in range(50, 80))
    (alert,) = diagnoser.alerts
    assert alert.ongoing and alert.last_step == 79


def test_non_finite_alerts_never_end():
    records = run_records()[:15] + [
        record(i, loss={"total": 1.0}, grad_norm=layered(1.0)) for i in range(15, 30)
    ]
    alert = next(a for a in diagnose(records, meta=META) if a.rule == "nonfinite")
    assert alert.steps == (12, 14) and alert.ongoing
