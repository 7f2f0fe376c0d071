"""The dashboard's store with the columnar cache: the same data, alerts caught up."""

import time

import numpy as np
import pytest

from cockpit.app.store import RunStore
from cockpit.instruments import RunData
from cockpit.logs import LogReader, _columns
from cockpit.logs._format import encode_record
from tests.instruments.synthetic import step_records, write_run


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    monkeypatch.setattr(_columns, "MIN_SEGMENT_BYTES", 1)


def append(run_dir, steps, nonfinite_loss=()):
    with (run_dir / "steps.jsonl").open("a") as file:
        for step in steps:
            for record in step_records(step):
                if step in nonfinite_loss and "loss" in record["values"]:
                    record["values"]["loss"] = float("nan")
                file.write(encode_record(record)[0] + "\n")


def caught_up(store, name, timeout=30.0):
    """Poll until the diagnoser has seen every record read."""
    state = store.state(name)
    deadline = time.monotonic() + timeout
    while state.diagnosed < state.reader.offset:
        assert time.monotonic() < deadline, "the diagnosis did not catch up"
        time.sleep(0.05)
        store.poll()
    return state


def assert_same_data(cached, decoded):
    assert cached.quantities() == decoded.quantities()
    assert cached.last_step == decoded.last_step
    for quantity in decoded.quantities():
        assert cached.layers(quantity) == decoded.layers(quantity)
        for layer in [None, *decoded.layers(quantity)]:
            a, b = cached.series(quantity, layer), decoded.series(quantity, layer)
            np.testing.assert_array_equal(a.steps, b.steps)
            np.testing.assert_array_equal(a.values, b.values)
            hists_a = cached.histograms(quantity, layer)
            hists_b = decoded.histograms(quantity, layer)
            assert [h.step for h in hists_a] == [h.step for h in hists_b]
            for x, y in zip(hists_a, hists_b, strict=True):
                np.testing.assert_array_equal(x.counts, y.counts)
                np.testing.assert_array_equal(x.edges, y.edges)


def from_json(run_dir):
    """The run's data sorted from the decoded JSON lines, never from a cache."""
    data = RunData(run_dir.name)
    data.extend_records(LogReader(run_dir).read_new())
    return data


def test_a_second_store_reads_the_cache_with_the_same_data_and_alerts(tmp_path):
    logdir = tmp_path / "logs"
    write_run(logdir / "run", steps=40, columns=False)
    append(logdir / "run", range(40, 45), nonfinite_loss={42})
    reference = from_json(logdir / "run")
    first = RunStore(logdir)  # decodes the JSON, writes the cache, reads it back
    first.poll()
    assert list((logdir / "run" / _columns.COLUMNS_DIR).glob("*.arrow"))
    decoded = first.state("run")
    assert_same_data(decoded.data, reference)
    assert decoded.diagnosed == decoded.reader.offset
    assert decoded.data.alerts, "the NaN loss raises an alert"

    second = RunStore(logdir)  # maps the cache
    second.poll()
    state = second.state("run")
    assert state.reader.offset == decoded.reader.offset
    assert_same_data(state.data, reference)
    state = caught_up(second, "run")
    assert [(a.rule, a.first_step, a.last_step) for a in state.data.alerts] == [
        (a.rule, a.first_step, a.last_step) for a in decoded.data.alerts
    ]


def test_steps_appended_after_the_cache_are_read_and_diagnosed(tmp_path):
    logdir = tmp_path / "logs"
    write_run(logdir / "run", steps=20, columns=False)
    RunStore(logdir).poll()  # writes the cache
    store = RunStore(logdir)
    store.poll()
    append(logdir / "run", range(20, 30), nonfinite_loss={25})
    store.poll()
    state = caught_up(store, "run")
    assert state.data.series("loss").steps.max() == 29
    assert any(a.first_step == 25 for a in state.data.alerts)


def test_a_cache_linked_outside_logdir_is_not_read(tmp_path):
    logdir = tmp_path / "logs"
    write_run(logdir / "run", steps=10, columns=False)
    RunStore(tmp_path / "logs").poll()
    outside = tmp_path / "elsewhere"
    (logdir / "run" / _columns.COLUMNS_DIR).rename(outside)
    (logdir / "run" / _columns.COLUMNS_DIR).symlink_to(outside)
    store = RunStore(logdir)
    store.poll()
    state = store.state("run")
    assert state.diagnosed == state.reader.offset  # read from the JSON
    assert state.error is None
