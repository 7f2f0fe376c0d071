"""Dashboard speed: how soon a new step is drawn, and what a long run costs the server.

Run from the repository root (about 2 minutes on an idle 2-core CPU)::

    .venv/bin/python benchmarks/dashboard.py
    .venv/bin/python benchmarks/dashboard.py --steps 10000 --appends 5   # quicker

Records (``_dashboard/records.py``): real ones. The digits CNN of ``cockpit demo``
(``cockpit.zoo.models.digits_cnn``) trains ``--template-steps`` steps with the
``economy`` preset (every quantity at every step: the preset for long runs; ``full``
adds 2D histograms of 9 x 1024 counts per step). Its log lines are the templates;
longer runs repeat them with shifted steps, written by the real ``RunWriter``, so every
line is what the tracker writes.

Measured:

(a) Latency, new step to browser (``_dashboard/latency.py``): ``cockpit serve`` (a
    subprocess, default check for new steps every 0.25 s) serves a run of
    ``--latency-steps`` steps to headless Chromium, scrolled to the loss panel (the
    panels out of view wait until scrolled to). The script appends one step at a
    time (after a random pause of 0.3 to 1.3 s, so appends land at every phase of the
    checks) and times from the line being written to ``steps.jsonl`` to the step being
    in the loss plot's drawn data (plotly's ``_fullData``), ``--appends`` times.
    Target: median < 1 s. Also timed: until every panel in view has redrawn (the last
    graph whose drawn data changed, once none changed for a second; that second
    comes before the pause).
(b) Build (``_dashboard/server.py``, as (c)): the server's time to answer the request
    that draw all panels of a ``--steps``-step run (Dash's figure callback through
    Flask's test client: one request per group of panels, as the page sends them:
    figures, JSON encoding, responses), median of ``--repeats``.
    Also the live case: one more step appended, the poll that reads it, and the
    redraw. Target: < 1 s.
(c) Cold load of that run in a fresh process: the polls until every step is read
    (reading and decoding ``steps.jsonl``, sorting the numbers into per-series
    arrays; a poll reads at most ``cockpit.app.store.POLL_BYTES``, so a long run
    takes several) and the first build. Target: < 5 s. (b) runs in the same process after it; the two phases of
    the poll are timed apart in another fresh process.

Output (``_dashboard/report.py``): a Markdown table on stdout, and ``dashboard-cpu.md``
/ ``.json`` (numbers, command line, versions, date, load average) in
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _dashboard.latency import latency
from _dashboard.records import template_records
from _dashboard.report import environment, log, table, write_results
from _dashboard.server import long_run, phases, serve_long_run

HERE = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="long run steps")
    parser.add_argument("--latency-steps", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="builds timed")
    parser.add_argument("--template-steps", type=int, default=50)
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument("--serve-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phases-child", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve_child or args.phases_child:
        child = args.serve_child or args.phases_child
        result = (
            serve_long_run(child, args.repeats) if args.serve_child else phases(child)
        )
        print(json.dumps(result))
        return
    env = environment()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dashboard-") as scratch:
        folders = [Path(scratch) / name for name in ("template", "live", "long")]
        for folder in folders:
            folder.mkdir()
        log(f"training {args.template_steps} template steps ...")
        templates, meta = template_records(args.template_steps, folders[0])
        period = args.template_steps
        log("(a) latency ...")
        lat = latency(templates, meta, period, args, folders[1])
        log("(b, c) long run ...")
        big = long_run(templates, meta, period, args, folders[2])
    env["load_average_end"] = os.getloadavg()
    env["wall_s"] = time.perf_counter() - start
    settings = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if not key.endswith("_child")
    }
    results = {
        "environment": env,
        "settings": settings,
        "latency": lat,
        "long_run": big,
    }
    text = table(results)
    print(text)
    write_results(args.output_dir, results, text)


if __name__ == "__main__":
    main()
