"""The README's quick start is what CI runs."""

import re
from pathlib import Path

from cockpit.app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = commands[1]
    assert test_command.endswith("-m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_main_job_is_the_demo():
    readme = (ROOT / "README.md").read_text()
    main_job = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)[0]
    assert main_job.endswith(".venv/bin/cockpit demo")
    assert "cockpit = cockpit.app.cli:main" in (ROOT / "setup.cfg").read_text()
    assert build_parser().parse_args(["demo"]).command == "demo"
