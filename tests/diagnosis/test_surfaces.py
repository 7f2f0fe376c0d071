"""Where alerts show: dashboard summary and markers, cockpit check, report, on_alert."""

from __future__ import annotations

import json
import threading

import pytest

from cockpit.app import callbacks
from cockpit.app.alerts_summary import ALERT_LINK, alert_summary, linked_range
from cockpit.app.cli import main
from cockpit.app.store import RunStore
from cockpit.diagnosis import Alert
from cockpit.instruments import REGISTRY, RunData, View
from cockpit.instruments._alerts import MARKER_PREFIX
from cockpit.instruments._reading import read_run
from cockpit.instruments._report_alerts import alert_lines
from cockpit.logs import RunWriter
from tests.diagnosis.synthetic import META, layered, record


def failing_records(steps: int = 12, nan_at: int = 8) -> list[dict]:
    out = []
    for step in range(steps):
        bad = step >= nan_at
        out.append(
            record(
                step,
                ["loss.total"] if bad else None,
                loss={"total": None if bad else 1.0 / (step + 1)},
                grad_norm=layered(1.0, w0=1.0, b0=1.0, w2=1.0, b2=1.0),
            )
        )
    return out


def write(run_dir, records, on_alert=None) -> None:
    with RunWriter(run_dir, META, on_alert=on_alert) as writer:
        for one in records:
            writer.submit(one)


@pytest.fixture
def logdir(tmp_path):
    write(tmp_path / "bad", failing_records())
    write(tmp_path / "good", failing_records(nan_at=99))
    return tmp_path


def test_summary_lists_alerts_and_links_to_the_panel(logdir):
    store = RunStore(logdir)
    store.poll()
    good, bad = alert_summary(store, ["good", "bad"])
    (good_title,) = good.children
    assert good_title.children == "good: healthy (no alerts)"
    title, alert = bad.children
    assert title.children == "bad: 1 alert holding"
    link = alert.children[-1]
    assert link.href == "#loss-card"
    # The link carries the alert's steps with a margin of 5 (10% of 3 is less).
    assert linked_range(link.id) == (3, 16)
    assert link.id["type"] == ALERT_LINK
    assert "(steps 8-11)" in alert.children[2].children


def test_ended_alerts_are_folded_and_do_not_make_a_run_unhealthy(tmp_path):
    # alpha overshoots on steps 0-19 (median over the window above 1), then the
    # steps shrink: the alert ends, the run is healthy now.
    alphas = [3.0] * 20 + [0.1] * 30
    write(tmp_path / "recovered", [record(i, alpha=a) for i, a in enumerate(alphas)])
    store = RunStore(tmp_path)
    store.poll()
    (block,) = alert_summary(store, ["recovered"])
    title, folded = block.children
    assert title.children == "recovered: healthy (1 ended)"
    summary, alert = folded.children
    assert summary.children == "1 ended"
    assert "ended)" in alert.children[2].children
    assert "alert-ended" in alert.className


def test_the_store_diagnoses_only_new_records(logdir):
    store = RunStore(logdir)
    store.poll()
    state = store.state("bad")
    (alert,) = state.data.alerts
    with (logdir / "bad" / "steps.jsonl").open("a") as file:
        file.write(json.dumps(record(12, ["loss.total"], loss={"total": None})) + "\n")
    store.poll()
    assert state.data.alerts[0] is alert and alert.last_step == 12
    assert state.diagnoser._history.records == 13  # each record read once


def test_panels_get_markers_from_the_base_class(logdir):
    store = RunStore(logdir)
    store.poll()
    runs = store.runs(["bad"])
    figure = REGISTRY["loss"]().figure(runs, View())
    markers = [
        s for s in figure.layout.shapes if (s.name or "").startswith(MARKER_PREFIX)
    ]
    assert [(m.name, m.x0, m.x1) for m in markers] == [("alert:nonfinite", 8, 11)]
    untouched = REGISTRY["grad_norm"]().figure(runs, View())
    assert not [
        s for s in untouched.layout.shapes if (s.name or "").startswith("alert")
    ]


def test_figure_cache_redraws_when_an_alert_grows(logdir):
    store = RunStore(logdir)
    store.poll()
    runs = store.runs(["bad"])
    loss = REGISTRY["loss"]()
    before = callbacks.FigureCache.key(loss, runs, View())
    runs[0].alerts[0].last_step = 20
    assert callbacks.FigureCache.key(loss, runs, View()) != before


def test_check_command_exit_status_and_formats(logdir, capsys):
    assert main(["check", str(logdir / "good")]) == 0
    assert "healthy" in capsys.readouterr().out
    assert main(["check", str(logdir / "good"), str(logdir / "bad")]) == 1
    out = capsys.readouterr().out
    assert "ERROR   nonfinite (steps 8-11)" in out
    assert main(["check", str(logdir / "bad"), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    (alert,) = data["runs"][str(logdir / "bad")]
    assert alert["rule"] == "nonfinite" and alert["first_step"] == 8
    assert main(["check", str(logdir / "nowhere")]) == 2
    assert "run directory" in capsys.readouterr().err


def test_fail_on_warning_fails_on_warnings_only(tmp_path, capsys):
    write(tmp_path / "alpha", [record(i, alpha=3.0) for i in range(20)])
    assert main(["check", str(tmp_path / "alpha")]) == 0
    assert main(["check", str(tmp_path / "alpha"), "--fail-on", "warning"]) == 1
    capsys.readouterr()


def test_check_passes_a_run_whose_alerts_ended(tmp_path, capsys):
    alphas = [3.0] * 20 + [0.1] * 30
    write(tmp_path / "recovered", [record(i, alpha=a) for i, a in enumerate(alphas)])
    assert main(["check", str(tmp_path / "recovered"), "--fail-on", "warning"]) == 0
    out = capsys.readouterr().out
    assert "healthy (1 ended)" in out
    assert "alpha_overshoot (steps 0-" in out and ", ended)" in out


def test_report_lists_the_alerts(logdir):
    bad = read_run(logdir / "bad")
    assert [a.rule for a in bad.alerts] == ["nonfinite"]
    lines = alert_lines(bad)
    assert lines[0][0] == "1 alert holding."
    assert lines[1][0].startswith("ERROR nonfinite (steps 8-11)")
    assert "Healthy" in alert_lines(read_run(logdir / "good"))[0][0]
    assert alert_lines(RunData("empty")) == alert_lines(read_run(logdir / "good"))


def test_on_alert_gets_each_alert_once_on_the_writer_thread(tmp_path):
    seen: list[tuple[Alert, str]] = []

    def on_alert(alert: Alert) -> None:
        seen.append((alert, threading.current_thread().name))

    write(tmp_path / "run", failing_records(), on_alert)
    ((alert, thread),) = seen
    assert alert.rule == "nonfinite" and alert.first_step == 8
    assert thread.startswith("cockpit-writer")


def test_on_alert_exceptions_become_notices(tmp_path):
    def on_alert(alert: Alert) -> None:
        raise RuntimeError("callback broke")

    writer = RunWriter(tmp_path / "run", META, on_alert=on_alert)
    for one in failing_records():
        writer.submit(one)
    writer.close()
    notices = writer.drain_notices()
    assert any("on_alert raised RuntimeError: callback broke" in n for n in notices)
    assert len((tmp_path / "run" / "steps.jsonl").read_text().splitlines()) == 12
