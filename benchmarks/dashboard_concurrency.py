"""The dashboard reading while three training processes write, for minutes.

Run from the repository root::

    .venv/bin/python benchmarks/dashboard_concurrency.py --seconds 300

Three training processes (``tests/app/tracked_trainer.py``: a tiny MLP with the
``economy`` preset, pausing ``--pause`` seconds after each step) each write their own
run under one LOGDIR for ``--seconds``, while ``cockpit serve`` serves it and this
script asks it, over HTTP through Dash's callback route as a page does, for the poll,
the "performance" panels and each run's loss in windows of 500 steps, in a loop, and
then until it has shown every step written (``tests/app/concurrency.py``, which
``tests/app/test_concurrency.py`` runs for seconds).

Output: the steps each process trained, the steps in its log, the steps the server
showed without a gap, the requests sent and every error, on stdout and in
``benchmarks/results/dashboard-concurrency-cpu.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from _dashboard.report import environment, log, setting_lines

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.app.concurrency import watch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks/results")
    return parser.parse_args(argv)


def table(result: dict) -> str:
    runs = result["watch"]
    lines = [
        "| run | steps trained | steps in the log | steps shown |",
        "|---|---|---|---|",
        *(
            f"| {run} | {runs['trained'].get(run, 0):,} | {written:,} | "
            f"{runs['seen'].get(run, 0):,} |"
            for run, written in runs["written"].items()
        ),
        "",
        f"Requests: {runs['requests']:,}; errors: {len(runs['errors'])}"
        + "".join(f"\n- {error}" for error in runs["errors"][:20]),
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    env = environment()
    log(f"three trainers for {args.seconds:.0f} s ...")
    with tempfile.TemporaryDirectory(prefix="concurrency-") as logdir:
        seen = watch(Path(logdir), args.seconds, args.pause)
    env["load_average_end"] = os.getloadavg()
    result = {
        "environment": env,
        "settings": {"seconds": args.seconds, "pause": args.pause},
        "watch": dataclasses.asdict(seen),
    }
    text = table(result)
    print(text)
    header = [
        "# Dashboard reading while three processes train",
        "",
        *setting_lines(env),
        f"- wall time: {seen.seconds:.0f} s",
        "",
    ]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / "dashboard-concurrency-cpu"
    out.with_suffix(".md").write_text("\n".join(header) + "\n" + text + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
