"""Python run as a child process by the tests (examples, launchers of several ranks)."""

from __future__ import annotations

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
