"""A sweep under one LOGDIR: how soon the dashboard draws, and what the server costs.

Run from the repository root (about a minute on an idle 2-core CPU)::

    .venv/bin/python benchmarks/many_runs.py
    .venv/bin/python benchmarks/many_runs.py --runs 100 --steps 300 --repeats 3

The runs: one run of ``--steps`` steps of the test suite's synthetic ``economy``
records (``tests/instruments/synthetic.py``) written by the real ``RunWriter``, its
``steps.jsonl`` copied into ``--runs`` run directories whose ``meta.json`` differ in
name, start time and ``config`` (``lr`` and ``seed``), as a sweep leaves them.

Measured:

* ``first_trace_s``: ``cockpit serve`` (a subprocess) serves the LOGDIR; headless
  Chromium opens the page; seconds from asking for the page to the first trace drawn
  in the loss panel (the newest run is selected), ``--repeats`` fresh pages, each on
  a fresh server.
* ``select_s``: then a second run is ticked in the run list; seconds until the
  comparison panel draws both runs (the second run is read when selected).
* ``run_list_px``: the height of the run list in pixels.
* ``two_runs_first_trace_s``: the same on a LOGDIR holding two of the runs alone
  (the page's own cost, to compare with).
* ``server_first_poll_s`` / ``server_all_runs_s``: in this process, the store's first
  poll as the page's first poll makes it (every ``meta.json``, the selected run's
  steps), and a poll that reads every run's steps (what the dashboard did before).

Output: one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _dashboard.latency import dashboard_page
from _dashboard.report import log

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.app.test_browser import DRAWN, LEGEND_GROUPS  # noqa: E402


def make_sweep(logdir: Path, runs: int, steps: int) -> list[str]:
    """``runs`` run directories under ``logdir``; their names, newest first."""
    from cockpit.logs import RunWriter
    from tests.instruments.synthetic import records

    first = logdir / "template"
    with RunWriter(first, {"run_name": "template"}) as writer:
        for record in records(steps, curvature=False):
            writer.submit(record)
    meta = json.loads((first / "meta.json").read_text())
    names = []
    for index in range(runs):
        name = f"lr{10 ** -(index % 5 + 1)}-seed{index // 5}"
        run_dir = logdir / name
        run_dir.mkdir()
        shutil.copy(first / "steps.jsonl", run_dir / "steps.jsonl")
        config = {"lr": 10 ** -(index % 5 + 1), "seed": index // 5}
        run_meta = {**meta, "run_name": name, "start_time": 1.7e9 + index}
        (run_dir / "meta.json").write_text(json.dumps({**run_meta, "config": config}))
        names.append(name)
    shutil.rmtree(first)
    return names[::-1]


def browser_open(logdir: Path, second: str) -> dict[str, float]:
    """One fresh server and page: first trace, then selecting ``second``."""
    with dashboard_page(logdir, goto=False) as (page, _, url):
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(DRAWN, arg="loss-graph", timeout=120_000)
        first = time.perf_counter() - start
        height = page.locator("#run-select").bounding_box()["height"]
        page.locator("#run-filter").fill(second)
        page.locator("#run-filter").press("Enter")
        label = page.locator("#run-select label", has_text=f"{second} (")
        label.first.wait_for(timeout=60_000)
        start = time.perf_counter()
        label.first.click()
        page.wait_for_function(
            f"() => ({LEGEND_GROUPS})('compare-graph').length === 2", timeout=120_000
        )
        select = time.perf_counter() - start
    return {"first_trace_s": first, "select_s": select, "run_list_px": height}


def server_polls(logdir: Path, newest: str) -> dict[str, float]:
    from cockpit.app.store import RunStore

    store = RunStore(logdir)
    start = time.perf_counter()
    store.poll(shown=[])
    store.poll(shown=[newest])
    first = time.perf_counter() - start
    start = time.perf_counter()
    RunStore(logdir).poll()
    return {
        "server_first_poll_s": first,
        "server_all_runs_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sweep-") as scratch:
        logdir = Path(scratch) / "sweep"
        logdir.mkdir()
        log(f"writing {args.runs} runs of {args.steps} steps ...")
        names = make_sweep(logdir, args.runs, args.steps)
        opens = []
        for repeat in range(args.repeats):
            opens.append(browser_open(logdir, names[-1 - repeat]))
            log(f"  page {repeat + 1}: {opens[-1]}")
        polls = server_polls(logdir, names[0])
        alone = Path(scratch) / "alone"
        alone.mkdir()
        shutil.copytree(logdir / names[0], alone / names[0])
        shutil.copytree(logdir / names[1], alone / names[1])
        baseline = [browser_open(alone, names[1]) for _ in range(args.repeats)]
    result = {
        "runs": args.runs,
        "steps": args.steps,
        **{
            key: statistics.median(o[key] for o in opens)
            for key in ("first_trace_s", "select_s", "run_list_px")
        },
        "first_trace_all_s": [round(o["first_trace_s"], 2) for o in opens],
        "two_runs_first_trace_s": statistics.median(
            o["first_trace_s"] for o in baseline
        ),
        **polls,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
