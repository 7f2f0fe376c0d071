"""Training processes killed, terminated and starved of disk, from outside.

The children come from a fork server (``tests/logs/training_child.py``) so that each
costs a fork, not a torch import.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cockpit
from cockpit.logs import LogReader

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


class Server:
    """The fork server: start a training child, kill it, wait for its end."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.logs.training_child"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, **request) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["pid"]

    def wait(self, pid: int) -> int:
        assert self.process.stdout is not None
        report = json.loads(self.process.stdout.readline())
        assert report["pid"] == pid
        return report["exit"]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def server():
    server = Server()
    yield server
    server.close()


def completed_steps(progress: Path, timeout: float = 60.0, at_least: int = 1) -> int:
    """Steps the child completed, once it completed ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        text = progress.read_text() if progress.exists() else ""
        done = len(text.splitlines())
        if done >= at_least or time.monotonic() > deadline:
            return done
        time.sleep(0.01)


def check_log(run_dir: Path) -> list[int]:
    """The logged steps, after checking that the log is whole; returns them sorted."""
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    raw = (run_dir / "steps.jsonl").read_bytes()
    lines = raw.split(b"\n")
    # Every complete line parses; at most the last one is cut short.
    for line in lines[:-1]:
        json.loads(line)
    records = LogReader(run_dir).read_new()
    assert len(records) == len(lines) - 1
    for record in records:
        assert set(record) >= {"step", "time", "values"}
    steps = sorted({record["step"] for record in records})
    assert steps == list(range(len(steps))), "contiguous from step 0"
    run = cockpit.load(run_dir)
    assert run.meta == meta
    if steps:
        assert sorted(set(run.scalar("loss").index)) == steps
    return steps


def test_sigkill_at_random_points_never_corrupts_the_log(server, tmp_path):
    rng = random.Random(15)
    lost = []
    for kill in range(KILLS):
        progress = tmp_path / f"progress{kill}"
        pid = server.start(
            logdir=str(tmp_path), run_name=f"kill{kill}", progress=str(progress)
        )
        completed_steps(progress)
        time.sleep(rng.uniform(0.2, 2.0))
        os.kill(pid, signal.SIGKILL)
        assert server.wait(pid) == -signal.SIGKILL
        steps = check_log(tmp_path / f"kill{kill}")
        meta = json.loads((tmp_path / f"kill{kill}" / "meta.json").read_text())
        assert meta["status"] == "running"
        done = completed_steps(progress)
        # A step's record may be written before the child notes the step as done.
        assert len(steps) <= done + 1
        lost.append(max(0, done - len(steps)))
    # The README's "Reliability" section quotes this line (pytest -s shows it).
    print(f"\n{KILLS} SIGKILLs: log intact each time; steps lost at most {max(lost)}")
    assert max(lost) <= 5, lost


def test_sigterm_marks_the_run_terminated_and_still_ends_it(server, tmp_path):
    progress = tmp_path / "progress"
    pid = server.start(logdir=str(tmp_path), run_name="term", progress=str(progress))
    completed_steps(progress, at_least=20)
    os.kill(pid, signal.SIGTERM)
    assert server.wait(pid) == -signal.SIGTERM, "ends as SIGTERM ends a process"
    steps = check_log(tmp_path / "term")
    run = cockpit.load(tmp_path / "term")
    assert run.meta["status"] == "terminated"
    assert completed_steps(progress) - len(steps) <= 1


def test_full_disk_is_reported_once_and_never_claims_finished(server, tmp_path):
    progress, result = tmp_path / "progress", tmp_path / "result.json"
    pid = server.start(
        logdir=str(tmp_path),
        run_name="full",
        progress=str(progress),
        result=str(result),
        steps=300,
        max_file_size=20_000,
    )
    assert server.wait(pid) == 0
    seen = json.loads(result.read_text())
    assert completed_steps(progress) == 300, "training went on"
    assert seen["raised"] == []
    assert seen["thread_deaths"] == []
    steps = check_log(tmp_path / "full")
    assert 0 < len(steps) < 300
    meta = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert meta["status"] == "incomplete"
    # The first record lost is step len(steps)'s, or the late alpha record of the
    # last logged step (alpha is known one step later).
    first = meta["lost"]["first_step"]
    assert len(steps) - 1 <= first <= len(steps)
    assert meta["lost"]["records"] >= 300 - len(steps)
    (fault,) = [w for w in seen["warnings"] if "could not write" in w]
    assert f"from step {first} on" in fault
    assert "File too large" in fault
