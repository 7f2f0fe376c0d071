"""``cockpit demo``: its argument errors, and the whole demo as a user runs it.

The end-to-end tests start ``cockpit demo`` as a subprocess, as a user would, watch
its output, its log and (in headless Chromium) its page, then stop it with a signal and
check that the training subprocess is gone and its run closed.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cockpit.app import demo_command
from tests.app import test_browser as browser_tests
from tests.app.test_browser import (
    ARGS,
    CHROMIUM,
    MAX_STEP,
    ROOT,
    cockpit_command,
    free_port,
    wait_drawn,
    wait_until_up,
)

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(),
    reason="finds the training subprocess through /proc (Linux)",
)
URL_LINE = r"cockpit dashboard on (http://\S+)"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cockpit")
    demo_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["--steps", "ten"], "argument --steps: expected a whole number, got 'ten'"),
        (["--port", "70000"], "argument --port: must be from 1 to 65535, got 70000"),
        (["--port", "0"], "argument --port: must be from 1 to 65535, got 0"),
        (["--logdir"], "argument --logdir: expected one argument"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["demo", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults():
    args = parse(["demo"])
    assert (args.port, args.host, args.steps, args.logdir) == (
        8050,
        "127.0.0.1",
        demo_command.DEMO_STEPS,
        None,
    )
    assert args.run is demo_command.run


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args):
        raise AssertionError("the training must not start")

    monkeypatch.setattr(demo_command, "_start_training", refuse)


def test_a_logdir_that_is_a_file_is_refused(tmp_path, capsys, no_training):
    (tmp_path / "file").write_text("")
    args = parse(
        ["demo", "--logdir", str(tmp_path / "file"), "--port", str(free_port())]
    )
    assert args.run(args) == 2
    assert f"--logdir {tmp_path / 'file'} is a file" in capsys.readouterr().err


def test_a_busy_port_is_refused_before_training(tmp_path, capsys, no_training):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = parse(["demo", "--port", str(port), "--logdir", str(tmp_path / "new")])
        assert args.run(args) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1 port {port}" in err
    assert "--port" in err
    assert not (tmp_path / "new").exists()


class Demo:
    """``cockpit demo`` in a subprocess; a thread collects its output lines."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [*cockpit_command(), "demo", "--port", str(free_port()), *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self.lines.extend(self.process.stdout)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"cockpit demo exited early:\n{self.output}")
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in {timeout} s:\n{self.output}")

    def trainer(self) -> int:
        """The pid of the training subprocess."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                command = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid and b"cockpit.zoo.demo" in command:
                return int(stat.parent.name)
        raise AssertionError(f"no training subprocess:\n{self.output}")

    def stop(self, signum: int) -> int:
        """Send ``signum``; the exit status (killed after a minute)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._reader.join(timeout=10)
            assert self.process.stdout is not None
            self.process.stdout.close()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited; only its parent (now init) has yet to reap it


def only_run(logdir: Path) -> Path:
    (run_dir,) = [p.parent for p in logdir.glob("*/meta.json")]
    return run_dir


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "meta.json").read_text())["status"]


def lines(run_dir: Path) -> int:
    return (run_dir / "steps.jsonl").read_bytes().count(b"\n")


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def assert_loss_is_drawn(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url)
            wait_drawn(page, "loss", timeout=60_000)
            assert page.evaluate(MAX_STEP, "loss-graph") >= 0
            assert errors == []
        finally:
            chromium.close()


@needs_proc
@browser_tests.pytestmark
def test_demo_trains_serves_and_keeps_serving(tmp_path):
    demo = Demo("--steps", "30", "--logdir", str(tmp_path))
    try:
        url = demo.wait_for(URL_LINE).group(1)
        trainer = demo.trainer()
        run_dir = only_run(tmp_path)
        written = lines(run_dir)
        wait_until(lambda: lines(run_dir) > written)
        wait_until_up(url, demo.process)
        assert_loss_is_drawn(url)
        demo.wait_for("Training finished; the dashboard keeps serving")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        assert status(run_dir) == "finished"
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output
    assert gone(trainer)
    assert "digits_cnn: 30 steps, preset full" in demo.output
    assert lines(run_dir) >= 30
    # Every instrument has data: plain SGD, so early stopping and CABS are defined.
    meta = json.loads((run_dir / "meta.json").read_text())
    assert not meta.get("absent"), meta.get("absent")
    records = (run_dir / "steps.jsonl").read_text().splitlines()
    logged = {key for line in records for key in json.loads(line)["values"]}
    assert {"early_stopping", "cabs"} <= logged


@needs_proc
def test_ctrl_c_mid_training_closes_the_run(tmp_path):
    demo = Demo("--steps", "100000", "--logdir", str(tmp_path))
    try:
        demo.wait_for(URL_LINE)
        trainer = demo.trainer()
        run_dir = only_run(tmp_path)
        wait_until(lambda: lines(run_dir) > 0)
        assert status(run_dir) == "running"
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output
    assert gone(trainer)
    assert status(run_dir) == "crashed"
    assert "Training stopped." in demo.output


@needs_proc
def test_sigterm_stops_training_and_removes_the_temporary_logdir():
    demo = Demo("--steps", "100000")
    try:
        run_dir = Path(demo.wait_for(r"into (\S+) \(a temporary directory").group(1))
        demo.wait_for(URL_LINE)
        trainer = demo.trainer()
        assert run_dir.is_dir()
    finally:
        code = demo.stop(signal.SIGTERM)
    assert code == 0, demo.output
    assert gone(trainer)
    assert not run_dir.parent.exists()
