"""Reporting: progress lines, summaries of timings, the Markdown table, the files.

The table goes to stdout; ``dashboard-cpu.md`` and ``.json`` to the output directory;
progress to stderr.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "n": len(seconds),
    }


def _spread(timing: dict[str, float]) -> str:
    return (
        f"{timing['median_s']:.2f} s (min {timing['min_s']:.2f}, "
        f"max {timing['max_s']:.2f}, n {timing['n']})"
    )


def table(results: dict) -> str:
    lat, big = results["latency"], results["long_run"]
    steps = f"{big['steps']:,}"
    rows = [
        (
            f"(a) new step to drawn in the loss panel, {results['settings']['latency_steps']:,}-step run, checks every 0.25 s",
            "< 1 s",
            _spread(lat),
        ),
        (
            "(a) new step to every panel in view redrawn, same run",
            "",
            _spread(lat["every_panel"]),
        ),
        (
            f"(b) build all panels, {steps}-step run",
            "< 1 s",
            f"{big['build']['median_s']:.2f} s (min {big['build']['min_s']:.2f}, max {big['build']['max_s']:.2f}, n {big['build']['n']})",
        ),
        (
            f"(b) one new step on the {steps}-step run: poll + redraw",
            "< 1 s",
            f"{big['live_step_s']:.2f} s",
        ),
        (
            f"(c) cold load, {steps}-step run ({big['megabytes']:.0f} MB): the polls that read it all + first build",
            "< 5 s",
            f"{big['cold']['total_s']:.2f} s ({big['cold']['polls']} polls {big['cold']['poll_s']:.2f}, the first {big['cold']['first_poll_s']:.2f}; first build {big['cold']['first_build_s']:.2f})",
        ),
    ]
    phases = big["cold_phases"]
    lines = [
        "| measurement | target | measured |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        f"Cold load by phase (timed apart): reading and decoding `steps.jsonl` "
        f"{phases['read_s']:.2f} s, sorting the numbers into per-series arrays "
        f"{phases['columns_s']:.2f} s; peak memory of the process "
        f"{big['peak_rss_megabytes']:,.0f} MB. The build's response is "
        f"{big['response_megabytes']:.1f} MB.",
    ]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import dash
    import numpy
    import pandas
    import plotly

    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "dash": dash.__version__,
        "plotly": plotly.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "load_average_start": os.getloadavg(),
    }


def setting_lines(env: dict[str, Any], *more: str) -> list[str]:
    """A results file's list of the command, the date, ``more``, the machine and
    its load average (``environment()``, plus ``load_average_end``)."""
    return [
        f"- command: `{env['command']}`",
        f"- date: {env['date']}",
        *more,
        f"- {env['platform']}, CPUs: {env['cpu_count']}",
        "- load average at start / end: "
        + " ".join(f"{x:.2f}" for x in env["load_average_start"])
        + " / "
        + " ".join(f"{x:.2f}" for x in env["load_average_end"]),
    ]


def write_results(output_dir: Path, results: dict, text: str) -> None:
    """``dashboard-cpu.md`` (the setting, then ``text``) and ``dashboard-cpu.json``."""
    env, lat, big = results["environment"], results["latency"], results["long_run"]
    output_dir.mkdir(parents=True, exist_ok=True)
    header = [
        "# Dashboard speed on cpu",
        "",
        *setting_lines(
            env,
            f"- python {env['python']}, dash {env['dash']}, plotly {env['plotly']}, "
            f"pandas {env['pandas']}, numpy {env['numpy']}, Chromium {lat['chromium']}",
        ),
        f"- records: the digits CNN's, economy preset (about 80 numbers and a 64-bin "
        f"histogram per step), {big['lines']:,} lines",
        f"- wall time: {env['wall_s']:.0f} s",
        "",
    ]
    (output_dir / "dashboard-cpu.md").write_text("\n".join(header) + "\n" + text + "\n")
    (output_dir / "dashboard-cpu.json").write_text(json.dumps(results, indent=1) + "\n")
