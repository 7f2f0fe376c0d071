"""Python run as a child process by the tests (examples, launchers of several ranks)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def run_python(
    args: list[str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd``, its output captured as text; it must succeed."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def torchrun(processes: int) -> list[str]:
    """``-m torch.distributed.run`` arguments for ``processes`` ranks on this machine.

    The rendezvous store listens on 127.0.0.1 only, on a port free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={processes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
    ]
