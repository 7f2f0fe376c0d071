import json
import math
import threading
import time

import pytest

from cockpit.exceptions import LogDirError
from cockpit.logs import FORMAT_VERSION, RunWriter


def read_lines(run_dir):
    text = (run_dir / "steps.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def read_meta(run_dir):
    return json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))


class Deferred:
    """Stands in for the tracker's record of device tensors."""

    def __init__(self, step, records=None, error=None):
        self.step = step
        self.records = records
        self.error = error
        self.thread = None

    def materialize(self):
        self.thread = threading.current_thread()
        if self.error is not None:
            raise self.error
        return self.records


@pytest.fixture
def writer(tmp_path):
    writer = RunWriter(tmp_path / "runs" / "a", {"run_name": "a"})
    yield writer
    writer.close()


def test_meta_is_written_on_open(tmp_path):
    writer = RunWriter(tmp_path / "run", {"run_name": "run", "lr": 0.1})
    meta = read_meta(tmp_path / "run")
    assert meta["run_name"] == "run"
    assert meta["lr"] == 0.1
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["status"] == "running"
    assert isinstance(meta["start_time"], float)
    assert writer.meta == meta
    assert writer.run_dir == tmp_path / "run"
    assert sorted(p.name for p in writer.run_dir.iterdir()) == [
        "meta.json",
        "steps.jsonl",
    ]
    writer.close()


def test_records_are_written_in_order(writer):
    for step in range(5):
        writer.submit({"step": step, "time": 0.0, "values": {"loss": step / 2}})
    assert writer.flush(timeout=10)
    lines = read_lines(writer.run_dir)
    assert [line["step"] for line in lines] == list(range(5))
    assert lines[3]["values"] == {"loss": 1.5}
    assert writer.drain_notices() == []


def test_nonfinite_values_give_a_notice(writer):
    writer.submit(
        {"step": 12, "values": {"loss": math.nan, "grad_norm": {"total": math.inf}}}
    )
    writer.flush()
    (line,) = read_lines(writer.run_dir)
    assert line["values"] == {"loss": None, "grad_norm": {"total": None}}
    assert line["nonfinite"] == ["loss", "grad_norm.total"]
    assert writer.drain_notices() == [
        "step 12: non-finite values logged as null: loss, grad_norm.total"
    ]
    assert writer.drain_notices() == []


def test_materialize_runs_on_the_writer_thread(writer):
    deferred = Deferred(4, {"step": 4, "values": {"alpha": 0.5}})
    writer.submit(deferred)
    writer.flush()
    assert deferred.thread is not threading.current_thread()
    assert read_lines(writer.run_dir) == [{"step": 4, "values": {"alpha": 0.5}}]


class Busy(Deferred):
    """Computes ``cpu`` seconds on the writer thread, then sleeps ``idle`` seconds."""

    def __init__(self, step, cpu, idle):
        super().__init__(step, {"step": step, "values": {}})
        self.cpu, self.idle = cpu, idle

    def materialize(self):
        start = time.thread_time()
        while time.thread_time() - start < self.cpu:
            pass
        time.sleep(self.idle)
        return super().materialize()


def test_cpu_seconds_count_the_writer_threads_work_not_its_waits(writer):
    # The training thread's own work is not the writer's.
    start = time.thread_time()
    while time.thread_time() - start < 0.05:
        pass
    writer.submit(Busy(0, cpu=0.03, idle=0.5))
    writer.flush()
    assert 0.03 <= writer.cpu_seconds < 0.03 + 0.25  # not the 0.5 s asleep


def test_materialize_may_return_several_records(writer):
    records = [{"step": 1, "values": {"a": 1.0}}, {"step": 1, "values": {"b": 2.0}}]
    writer.submit(Deferred(1, records))
    writer.flush()
    assert read_lines(writer.run_dir) == records


def test_failing_materialize_leaves_an_error_record_and_a_notice(writer):
    writer.submit(Deferred(7, error=RuntimeError("CUDA out of memory")))
    writer.submit({"step": 8, "values": {"loss": 1.0}})
    writer.flush()
    error, after = read_lines(writer.run_dir)
    assert error["step"] == 7
    assert error["values"] == {}
    assert error["error"] == "RuntimeError: CUDA out of memory"
    assert after["step"] == 8
    (notice,) = writer.drain_notices()
    assert "step 7" in notice
    assert "RuntimeError: CUDA out of memory" in notice


def test_unencodable_record_leaves_an_error_record(writer):
    writer.submit({"step": 2, "values": {"bad": object()}})
    writer.submit({"values": {}})
    writer.flush()
    first, second = read_lines(writer.run_dir)
    assert first["step"] == 2
    assert first["error"].startswith("TypeError: Cannot log object at 'bad'")
    assert second["step"] == -1
    assert second["error"].startswith("ValueError:")
    assert len(writer.drain_notices()) == 2


def test_record_notices_are_surfaced_not_written(writer):
    writer.submit({"step": 3, "values": {}, "notices": ["alpha skipped: no curvature"]})
    writer.flush()
    (line,) = read_lines(writer.run_dir)
    assert "notices" not in line
    assert writer.drain_notices() == ["alpha skipped: no curvature"]


def test_update_meta_merges_fields(writer):
    writer.update_meta(preset="economy", lr=[0.1, 0.01])
    meta = read_meta(writer.run_dir)
    assert meta["preset"] == "economy"
    assert meta["lr"] == [0.1, 0.01]
    assert meta["run_name"] == "a"
    assert not [p for p in writer.run_dir.iterdir() if p.suffix == ".tmp"]


def test_close_sets_status_and_end_time_and_is_idempotent(tmp_path):
    writer = RunWriter(tmp_path / "run", {})
    writer.submit({"step": 0, "values": {"loss": 1.0}})
    writer.close()
    meta = read_meta(tmp_path / "run")
    assert meta["status"] == "finished"
    assert meta["end_time"] >= meta["start_time"]
    assert len(read_lines(tmp_path / "run")) == 1
    writer.close("crashed")
    assert read_meta(tmp_path / "run")["status"] == "finished"
    assert writer.flush(timeout=1)


def test_context_manager_marks_a_crash(tmp_path):
    with pytest.raises(KeyError), RunWriter(tmp_path / "run", {}):
        raise KeyError("boom")
    assert read_meta(tmp_path / "run")["status"] == "crashed"


def test_submit_after_close_raises(tmp_path):
    writer = RunWriter(tmp_path / "run", {})
    writer.close()
    with pytest.raises(RuntimeError, match="writer is closed"):
        writer.submit({"step": 1, "values": {}})


def test_periodic_fsync_keeps_writing(tmp_path):
    writer = RunWriter(tmp_path / "run", {}, fsync_interval=0.0)
    for step in range(3):
        writer.submit({"step": step, "values": {}})
    writer.close()
    assert [line["step"] for line in read_lines(tmp_path / "run")] == [0, 1, 2]


def test_unwritable_logdir_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogDirError, match=r"Cannot write the run directory .*logdir="):
        RunWriter(blocker / "run", {})


def test_existing_run_is_refused(tmp_path):
    RunWriter(tmp_path / "run", {}).close()
    with pytest.raises(LogDirError, match=r"already exists\. Choose another run name"):
        RunWriter(tmp_path / "run", {})


def test_empty_existing_directory_is_accepted(tmp_path):
    (tmp_path / "run").mkdir()
    RunWriter(tmp_path / "run", {}).close()
    assert read_meta(tmp_path / "run")["status"] == "finished"


def test_meta_values_json_cannot_hold_are_made_readable(tmp_path):
    writer = RunWriter(tmp_path / "run", {"dtype": complex(1, 2), "eps": math.inf})
    meta = read_meta(tmp_path / "run")
    assert meta["dtype"] == "(1+2j)"
    assert meta["eps"] is None
    assert writer.drain_notices() == ["meta: non-finite values written as null: eps"]
    writer.close()
