"""``cockpit demo``: train a small CNN in the background and watch it live.

The training runs in a subprocess, ``python -m cockpit.zoo.demo``: a CNN on
scikit-learn's digits with plain SGD, the ``full`` preset (the costly curvature
quantities every 10th step) and ``early_stopping`` and ``cabs`` (plain SGD only), so
every instrument has data, because the dashboard never imports torch. It writes to ``--logdir`` or a
temporary directory (removed on exit); once the run exists the dashboard serves that
directory, and it keeps serving after training ends. Ctrl-C (or SIGTERM) stops the
training cleanly, so its run is closed, and then the dashboard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from cockpit.app.server import serve
from cockpit.logs.schema import META_FILE

__all__ = ["DEMO_STEPS", "add_parser", "run"]

#: Training steps by default: a few minutes of live viewing on a 2-core CPU.
DEMO_STEPS = 2000
#: Seconds the training gets to close its run once asked to stop.
_STOP_TIMEOUT_S = 30.0


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number, got {text!r}"
            ) from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``demo`` sub-parser to the ``cockpit`` command's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="train a small CNN in the background and watch it live",
        description="Train a small CNN on scikit-learn's digits in the background, "
        "with plain SGD, tracked with the full preset plus early stopping and CABS, "
        "and serve the live dashboard on its log. "
        "Ctrl-C stops the training and the dashboard.",
    )
    demo.add_argument(
        "--port",
        type=_whole_number(1, 65535),
        default=8050,
        help="TCP port (default 8050)",
    )
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1, this machine only); the dashboard "
        "has no authentication, so only widen it on a trusted network",
    )
    demo.add_argument(
        "--steps",
        type=_whole_number(1),
        default=DEMO_STEPS,
        help=f"training steps (default {DEMO_STEPS}, a few minutes on a 2-core CPU)",
    )
    demo.add_argument(
        "--logdir",
        default=None,
        help="directory to write the run to, kept afterwards (default: a temporary "
        "directory, removed on exit)",
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train in the background and serve the dashboard until interrupted.

    Args:
        args: ``port``, ``host``, ``steps`` and ``logdir`` (``None``: a temporary
            directory).

    Returns:
        The exit status: 0 after Ctrl-C, 1 if the training failed to start, 2 if the
        port or the log directory cannot be used.

    """
    try:
        _check_port(args.host, args.port)
        logdir = _make_logdir(args.logdir)
    except OSError as err:
        print(f"cockpit demo: {err}", file=sys.stderr)
        return 2
    try:
        return _train_and_serve(logdir, args)
    finally:
        if args.logdir is None:
            shutil.rmtree(logdir, ignore_errors=True)


def _check_port(host: str, port: int) -> None:
    """Fail before training starts if the dashboard could not listen on ``port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The web server reuses addresses too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(
                f"cannot serve on {host} port {port} ({err.strerror or err}); choose "
                "another port with --port."
            ) from None


def _make_logdir(logdir: str | None) -> Path:
    if logdir is None:
        return Path(tempfile.mkdtemp(prefix="cockpit-demo-"))
    path = Path(logdir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"--logdir {logdir} is a file; pass a directory (it is created if missing)."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _train_and_serve(logdir: Path, args: argparse.Namespace) -> int:
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    kept = (
        "" if args.logdir is not None else " (a temporary directory, removed on exit)"
    )
    print(
        f"Training a small CNN on scikit-learn's digits for {args.steps} steps "
        f"(preset full) into {logdir / name}{kept}; starting the trainer ...",
        flush=True,
    )
    trainer = _start_training(logdir, name, args.steps)
    stopping = threading.Event()
    try:
        with _sigterm_interrupts():
            if not _wait_for_run(logdir / name, trainer):
                print(
                    f"cockpit demo: the training exited ({trainer.returncode}) before "
                    "writing its run; its output above says why.",
                    file=sys.stderr,
                )
                return 1
            watcher = threading.Thread(
                target=_report_end, args=(trainer, stopping), daemon=True
            )
            watcher.start()
            serve(logdir, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        _stop(trainer)
    return 0


def _start_training(logdir: Path, name: str, steps: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "cockpit.zoo.demo",
        "--logdir",
        str(logdir),
        "--run-name",
        name,
        "--steps",
        str(steps),
    ]
    # Its own session: Ctrl-C in the terminal reaches only this process, which then
    # stops the training exactly once (a second signal could cut its closing short).
    return subprocess.Popen(
        command,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does, so the training is not left behind."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_for_run(run_dir: Path, trainer: subprocess.Popen[bytes]) -> bool:
    """Wait until the run's ``meta.json`` exists; ``False`` if the trainer exits first.

    Serving only then lets the dashboard select the new run on the first page load.
    """
    while not (run_dir / META_FILE).is_file():
        if trainer.poll() is not None:
            return False
        time.sleep(0.1)
    return True


def _report_end(trainer: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    code = trainer.wait()
    if stopping.is_set():
        return
    if code == 0:
        print(
            "Training finished; the dashboard keeps serving until Ctrl-C.", flush=True
        )
    else:
        print(
            f"The training exited with status {code}; the dashboard keeps serving "
            "until Ctrl-C.",
            file=sys.stderr,
            flush=True,
        )


def _stop(trainer: subprocess.Popen[bytes]) -> None:
    """Ask the training to close its run; kill it after a timeout or a second Ctrl-C."""
    if trainer.poll() is not None:
        return
    trainer.terminate()
    try:
        trainer.wait(timeout=_STOP_TIMEOUT_S)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        trainer.kill()
        trainer.wait()
