import json
import os
import time

import pytest

from cockpit.app.store import QUIET_S, RunNameError, RunStore
from tests.instruments.synthetic import step_records, write_run


@pytest.fixture
def logdir(tmp_path):
    root = tmp_path / "logs"
    write_run(root / "alpha-run", steps=5)
    write_run(root / "group" / "nested-run", steps=3, curvature=False)
    return root


def append(run_dir, step, **kwargs):
    from cockpit.logs._format import encode_record

    with (run_dir / "steps.jsonl").open("a") as file:
        for record in step_records(step, **kwargs):
            file.write(encode_record(record)[0] + "\n")


def test_discovers_runs_at_any_depth(logdir):
    store = RunStore(logdir)
    assert store.poll()
    assert sorted(store.names()) == ["alpha-run", "group/nested-run"]
    assert not store.poll()  # nothing new


def test_logdir_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        RunStore(tmp_path / "missing")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../logs/alpha-run", "'..' may not appear"),
        ("group/../../x", "'..' may not appear"),
        ("/etc", "expected a path relative to LOGDIR"),
        ("", "expected a path relative to LOGDIR"),
        ("no-such-run", "No run 'no-such-run'"),
        ("group", "No run 'group'"),
    ],
)
def test_refuses_names_outside_logdir(logdir, name, why):
    store = RunStore(logdir)
    with pytest.raises(RunNameError, match=why):
        store.resolve(name)


def test_refuses_a_symlink_out_of_logdir(logdir, tmp_path):
    write_run(tmp_path / "secret", steps=1)
    os.symlink(tmp_path / "secret", logdir / "link")
    store = RunStore(logdir)
    with pytest.raises(RunNameError, match="leads outside LOGDIR"):
        store.resolve("link")
    store.poll()
    assert "link" not in store.names()


def test_reads_incrementally(logdir):
    store = RunStore(logdir)
    store.poll()
    state = store.state("alpha-run")
    offset = state.reader.offset
    assert state.data.last_step == 4
    append(logdir / "alpha-run", 5)
    version = store.version
    assert store.poll()
    assert store.version == version + 1
    assert state.reader.offset > offset
    assert state.data.series("loss").steps.tolist() == [0, 1, 2, 3, 4, 5]


def test_half_written_line_waits(logdir):
    store = RunStore(logdir)
    store.poll()
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write('{"step": 9, "values": {"loss"')
    assert not store.poll()
    state = store.state("alpha-run")
    assert state.error is None and state.notices == []
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write(": 0.5}}\n")
    assert store.poll()
    assert state.data.series("loss").steps[-1] == 9


def test_corrupt_line_is_reported_and_the_rest_kept(logdir):
    store = RunStore(logdir)
    store.poll()
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write("this is not json\n")
    append(logdir / "alpha-run", 5)
    assert store.poll()
    state = store.state("alpha-run")
    assert state.error is None
    assert any("Skipped corrupt line" in n for n in state.notices)
    assert state.data.last_step == 5


def test_corrupt_meta_is_an_error_of_that_run_only(logdir):
    store = RunStore(logdir)
    store.poll()
    (logdir / "alpha-run" / "meta.json").write_text('{"format_version": "1.0", "sta')
    append(logdir / "group" / "nested-run", 3, curvature=False)
    assert store.poll()
    broken = store.state("alpha-run")
    assert "not valid JSON" in broken.error
    assert store.state("group/nested-run").data.last_step == 3
    (logdir / "alpha-run" / "meta.json").write_text(
        json.dumps({"format_version": "1.0", "status": "running"})
    )
    assert store.poll()
    assert broken.error is None


def test_writer_error_records_become_notices(logdir):
    with (logdir / "alpha-run" / "steps.jsonl").open("a") as file:
        file.write('{"step": 7, "values": {}, "error": "TypeError: cannot log"}\n')
    store = RunStore(logdir)
    store.poll()
    notices = store.state("alpha-run").notices
    assert notices == [
        "step 7: the writer could not log this record (TypeError: cannot log)"
    ]


def test_runs_skips_unknown_and_unsafe_names(logdir):
    store = RunStore(logdir)
    store.poll()
    runs = store.runs(["group/nested-run", "../x", "nope", "alpha-run"])
    assert [r.name for r in runs] == ["group/nested-run", "alpha-run"]


def test_status_follows_meta(logdir):
    store = RunStore(logdir)
    store.poll()
    assert store.state("alpha-run").status == "finished"


def test_reading_pauses_the_garbage_collector_only_meanwhile(logdir, monkeypatch):
    import gc

    from cockpit.logs import LogReader

    seen = []
    read_new = LogReader.read_new

    def spy(self, max_bytes=None):
        seen.append(gc.isenabled())
        return read_new(self, max_bytes)

    monkeypatch.setattr(LogReader, "read_new", spy)
    store = RunStore(logdir)
    assert store.poll()
    assert seen and not any(seen)
    assert gc.isenabled()
    monkeypatch.setattr(LogReader, "read_new", lambda self, max_bytes=None: 1 / 0)
    store.poll()
    assert gc.isenabled()
    assert "ZeroDivisionError" in (store.state("alpha-run").error or "")


def test_background_work_waits_while_panels_are_served(tmp_path):
    """``quiet`` holds background work back during a request and just after it."""
    store = RunStore(tmp_path)
    start = time.monotonic()
    store.quiet(5.0)
    assert time.monotonic() - start < 0.1  # no request yet: no wait
    with store.serving():
        start = time.monotonic()
        store.quiet(0.3)  # a request in progress: waits its limit
        assert time.monotonic() - start >= 0.29
    start = time.monotonic()
    store.quiet(5.0)  # a request just ended: waits until QUIET_S after it
    waited = time.monotonic() - start
    assert QUIET_S - 0.05 <= waited < QUIET_S + 0.5
