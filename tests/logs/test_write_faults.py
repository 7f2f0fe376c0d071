"""I/O faults under the writer thread: a full disk, a failing fsync, a failing close.

The faults are injected into the system calls on ``steps.jsonl`` alone; a real full
disk is ``tests/logs/test_crash.py``'s.
"""

import errno
import json
import os
import threading

import pytest

from cockpit.logs import RunWriter


def is_steps_file(fd):
    return os.readlink(f"/proc/self/fd/{fd}").endswith("steps.jsonl")


@pytest.fixture
def deaths(monkeypatch):
    """Exceptions that ended a thread; the writer's must never end it."""
    died = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    return died


def test_full_disk_mid_line_ends_the_log_cleanly(tmp_path, monkeypatch, deaths):
    writer = RunWriter(tmp_path / "run", {})
    for step in range(2):
        writer.submit({"step": step, "values": {"loss": 1.0}})
    writer.flush()
    write, calls = os.write, []

    def full_once(fd, data):
        """Half a line fits, then the disk is full; later the space is back."""
        if not is_steps_file(fd):
            return write(fd, data)
        calls.append(len(data))
        if len(calls) == 1:
            return write(fd, data[: len(data) // 2])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(os, "write", full_once)
    for step in range(2, 5):
        writer.submit({"step": step, "values": {"loss": 1.0}})
    writer.close()
    text = (tmp_path / "run" / "steps.jsonl").read_text()
    assert text.endswith("\n"), "the half line is cut off again"
    assert [json.loads(line)["step"] for line in text.splitlines()] == [0, 1]
    assert len(calls) == 2, "nothing is written after the fault"
    (notice,) = writer.drain_notices()
    assert "No space left on device" in notice
    assert "from step 2 on are not written" in notice
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "incomplete"
    assert meta["lost"]["records"] == 3
    assert (meta["lost"]["first_step"], meta["lost"]["last_step"]) == (2, 4)
    assert deaths == []


def test_failing_fsync_counts_the_unsynced_records(tmp_path, monkeypatch, deaths):
    fsync = os.fsync

    def failing(fd):
        if is_steps_file(fd):
            raise OSError(errno.EIO, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    writer = RunWriter(tmp_path / "run", {})
    for step in range(3):
        writer.submit({"step": step, "values": {}})
    writer.close("crashed")
    (notice,) = writer.drain_notices()
    assert notice.startswith("could not fsync")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "crashed", "a crash stays a crash"
    assert meta["lost"]["records"] == 3
    assert deaths == []


def test_failing_close_does_not_kill_the_writer_thread(tmp_path, monkeypatch, deaths):
    writer = RunWriter(tmp_path / "run", {})
    writer.submit({"step": 0, "values": {}})
    close = os.close

    def failing(fd):
        if is_steps_file(fd):
            close(fd)
            raise OSError(errno.EIO, "Input/output error")
        close(fd)

    monkeypatch.setattr(os, "close", failing)
    writer.close()
    assert not writer._thread.is_alive()
    assert deaths == []
    assert "could not close" in writer.drain_notices()[0]
