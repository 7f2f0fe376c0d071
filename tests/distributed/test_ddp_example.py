"""The torchrun example runs on 2 CPU processes and rank 0 alone writes its run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.scripts import run_python, torchrun

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_example_writes_one_finished_run(tmp_path):
    command = [
        *torchrun(2),
        str(ROOT / "examples" / "ddp_digits.py"),
        "--steps",
        "3",
        "--logdir",
        str(tmp_path),
        "--preset",
        "economy",
    ]
    run_python(command, cwd=tmp_path, timeout=300)
    assert [p.name for p in tmp_path.iterdir()] == ["ddp_digits"]
    meta = json.loads((tmp_path / "ddp_digits" / "meta.json").read_text())
    assert (meta["status"], meta["world_size"]) == ("finished", 2)
    assert (meta["global_batch_size"], meta["accumulation_steps"]) == (64, 2)
    steps = (tmp_path / "ddp_digits" / "steps.jsonl").read_text().splitlines()
    assert sorted({json.loads(line)["step"] for line in steps}) == [0, 1, 2]
