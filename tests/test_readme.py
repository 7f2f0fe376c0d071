"""The README's quick start is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, commands
    test_command = commands[1]
    assert test_command.endswith("-m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_example_runs_the_examples_script():
    readme = (ROOT / "README.md").read_text()
    main_job = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)[0]
    script = main_job.split()[-1]
    assert (ROOT / script).is_file()
