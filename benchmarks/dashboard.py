"""Dashboard speed: how soon a new step is drawn, and what a long run costs the server.

Run from the repository root (about 2 minutes on an idle 2-core CPU)::

    .venv/bin/python benchmarks/dashboard.py
    .venv/bin/python benchmarks/dashboard.py --steps 10000 --appends 5   # quicker

Records: real ones. The digits CNN of ``cockpit demo``
(``cockpit.zoo.models.digits_cnn``) trains ``--template-steps`` steps with the ``economy`` preset (every quantity at every
step: the preset for long runs; ``full`` adds 2D histograms of 9 x 1024 counts per
step). Its log lines are the templates; longer runs repeat them with shifted steps,
written by the real ``RunWriter``, so every line is what the tracker writes.

Measured:

(a) Latency, new step to browser: ``cockpit serve`` (a subprocess, default poll of
    1 s) serves a run of ``--latency-steps`` steps to headless Chromium. The script
    appends one step at a time (after a random pause of 0.3 to 1.3 s, so appends land
    at every phase of the poll) and times from the line being written to
    ``steps.jsonl`` to the step being in the loss plot's drawn data (plotly's
    ``_fullData``), ``--appends`` times. Target: median < 2 s.
(b) Build: the server's time to answer the request that draws all panels of a
    ``--steps``-step run (Dash's figure callback through Flask's test client:
    figures, JSON encoding, response), median of ``--repeats``. Also the live case:
    one more step appended, the poll that reads it, and the redraw. Target: < 1 s.
(c) Cold load of that run in a fresh process: the first poll (reading and decoding
    ``steps.jsonl``, sorting the numbers into per-series arrays) and the first
    build. Target: < 5 s. (b) runs in the same process after it; the two phases of
    the poll are timed apart in another fresh process.

Output: a Markdown table on stdout, and ``dashboard-cpu.md`` / ``.json`` (numbers,
command line, versions, date, load average) in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import os
import platform
import random
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The largest step in the loss plot's drawn data (plotly decodes typed arrays there).
MAX_STEP = """() => {
    const gd = document.querySelector('#loss-graph .js-plotly-plot');
    if (!gd || !gd._fullData) return -1;
    const xs = gd._fullData.filter(t => t.type === 'scatter' && t.x)
        .flatMap(t => Array.from(t.x, Number));
    return xs.length ? Math.max(...xs) : -1;
}"""
META_KEYS = ("format_version", "status", "start_time", "end_time")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def template_records(steps: int, folder: Path) -> tuple[list[dict[str, Any]], dict]:
    """Train the demo CNN with the economy preset; its records and ``meta.json``."""
    import torch

    from cockpit.logs import LogReader
    from cockpit.zoo.models import digits_cnn
    from cockpit.zoo.training import Settings, run

    torch.manual_seed(0)
    settings = Settings(str(folder), "template", steps, valid_every=10)
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = run(digits_cnn(), settings, "digits_cnn", lambda *_: None)
    reader = LogReader(run_dir)
    return reader.read_new(), reader.meta()


def repeated(templates: list[dict[str, Any]], period: int, steps: int) -> list[dict]:
    """The template records repeated with shifted steps, up to step ``steps - 1``."""
    out = []
    for offset in range(0, steps, period):
        out.extend(
            {**record, "step": record["step"] + offset}
            for record in templates
            if record["step"] + offset < steps
        )
    return out


def write_run(run_dir: Path, meta: dict, records: list[dict], close: bool = True):
    """Write ``records`` with the real writer; returns it (open unless ``close``)."""
    from cockpit.logs import RunWriter

    kept = {k: v for k, v in meta.items() if k not in META_KEYS}
    writer = RunWriter(run_dir, {**kept, "run_name": run_dir.name})
    for record in records:
        writer.submit(record)
    writer.flush()
    if close:
        writer.close()
    return writer


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "n": len(seconds),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"cockpit serve exited with {server.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.3)
    raise TimeoutError(f"cockpit serve did not answer at {url}")


def latency(templates, meta, period: int, args, logdir: Path) -> dict:
    """(a): seconds from a step's line in ``steps.jsonl`` to its point drawn."""
    from playwright.sync_api import sync_playwright

    total = args.latency_steps + args.appends
    records = repeated(templates, period, total)
    first = [r for r in records if r["step"] < args.latency_steps]
    later = [r for r in records if r["step"] >= args.latency_steps]
    writer = write_run(logdir / "live", meta, first, close=False)
    port = free_port()
    command = [sys.executable, "-m", "cockpit.app", "serve", str(logdir)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    rng = random.Random(0)
    seconds = []
    try:
        wait_until_up(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=BROWSER_ARGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            shown = f"({MAX_STEP})() >= {args.latency_steps - 1}"
            page.wait_for_function(f"() => {shown}", timeout=120_000)
            for step in range(args.latency_steps, total):
                time.sleep(rng.uniform(0.3, 1.3))
                for record in [r for r in later if r["step"] == step]:
                    writer.submit(record)
                writer.flush()
                start = time.perf_counter()
                page.wait_for_function(
                    f"() => ({MAX_STEP})() >= {step}", timeout=60_000
                )
                seconds.append(time.perf_counter() - start)
                log(f"  latency of step {step}: {seconds[-1]:.2f} s")
            browser_version = browser.version
            browser.close()
    finally:
        server.terminate()
        server.wait()
        writer.close()
    return {**summary(seconds), "seconds": seconds, "chromium": browser_version}


def figures_request(app, name: str) -> dict[str, Any]:
    """The body of the page's request for every figure of run ``name``."""
    (output,) = [key for key in app.callback_map if "figure-keys.data" in key]
    callback = app.callback_map[output]
    values = {
        "data-version.data": {"version": 1, "at": 0.0},
        "run-select.value": [name],
        "layer-select.value": "__model__",
        "y-scale.value": "auto",
        "x-scale.value": "linear",
        "figure-keys.data": {},
    }

    def props(items: list[dict[str, str]]) -> list[dict[str, Any]]:
        return [
            {**item, "value": values.get(f"{item['id']}.{item['property']}")}
            for item in items
        ]

    outputs = [part.rsplit(".", 1) for part in output.strip(".").split("...")]
    return {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": props(callback["inputs"]),
        "state": props(callback["state"]),
        "changedPropIds": ["data-version.data"],
    }


def timed_request(client, body: dict[str, Any]) -> tuple[float, bytes]:
    start = time.perf_counter()
    response = client.post("/_dash-update-component", json=body)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.status_code
    return elapsed, response.data


def phases(run_dir: Path) -> dict[str, float]:
    """The two parts of a cold load's poll, timed one by one: reading and columns.

    The collector is paused meanwhile, as the server's store pauses it.
    """
    from cockpit.instruments import RunData
    from cockpit.logs import LogReader

    gc.disable()
    start = time.perf_counter()
    records = LogReader(run_dir).read_new()
    read = time.perf_counter() - start
    start = time.perf_counter()
    RunData(run_dir.name).extend_records(records)
    columns = time.perf_counter() - start
    del records
    gc.enable()
    return {"read_s": read, "columns_s": columns}


def serve_long_run(logdir: Path, repeats: int) -> dict[str, Any]:
    """(c), then (b), as the server does them, in this (fresh) process.

    The run is ``logdir/long``; ``logdir/extra.json`` holds the records of one more
    step, appended to ``steps.jsonl`` for the live case.
    """
    from cockpit.app import create_app
    from cockpit.logs._format import encode_record

    app = create_app(logdir)
    store = app.server.config["cockpit_store"]
    client = app.server.test_client()
    body = figures_request(app, "long")
    start = time.perf_counter()
    store.poll()
    load = time.perf_counter() - start
    first_build, data = timed_request(client, body)
    builds = [timed_request(client, body)[0] for _ in range(repeats)]
    keys = json.loads(data)["response"]["figure-keys"]["data"]
    extra = json.loads((logdir / "extra.json").read_text())
    with (logdir / "long" / "steps.jsonl").open("a", encoding="utf-8") as steps:
        steps.writelines(encode_record(record)[0] + "\n" for record in extra)
    start = time.perf_counter()
    store.poll()
    live_body = {**body, "state": [{**body["state"][0], "value": keys}]}
    live = time.perf_counter() - start + timed_request(client, live_body)[0]
    return {
        "response_megabytes": len(data) / 1e6,
        "cold": {
            "poll_s": load,
            "first_build_s": first_build,
            "total_s": load + first_build,
        },
        "build": {**summary(builds), "seconds": builds},
        "live_step_s": live,
        "peak_rss_megabytes": peak_rss_megabytes(),
    }


def peak_rss_megabytes() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would report the
    parent's peak too, inherited at ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e3
    return float("nan")


def in_child(flag: str, path: Path, *more: str) -> dict[str, Any]:
    """Run this script with ``flag path`` in a fresh process; its JSON result."""
    command = [sys.executable, __file__, flag, str(path), *more]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def long_run(templates, meta, period: int, args, logdir: Path) -> dict:
    """(b) and (c) on a run of ``args.steps`` steps, each in a fresh process."""
    records = repeated(templates, period, args.steps + 1)
    first = [r for r in records if r["step"] < args.steps]
    write_run(logdir / "long", meta, first)
    extra = [r for r in records if r["step"] == args.steps]
    (logdir / "extra.json").write_text(json.dumps(extra))
    size = (logdir / "long" / "steps.jsonl").stat().st_size
    log(f"  wrote {args.steps} steps, {size / 1e6:.0f} MB")
    served = in_child("--serve-child", logdir, "--repeats", str(args.repeats))
    breakdown = in_child("--phases-child", logdir / "long")
    return {
        "steps": args.steps,
        "lines": len(first),
        "megabytes": size / 1e6,
        **served,
        "cold_phases": breakdown,
    }


def table(results: dict) -> str:
    lat, big = results["latency"], results["long_run"]
    steps = f"{big['steps']:,}"
    rows = [
        (
            f"(a) new step to drawn in the browser, {results['settings']['latency_steps']:,}-step run, poll 1 s",
            "< 2 s",
            f"{lat['median_s']:.2f} s (min {lat['min_s']:.2f}, max {lat['max_s']:.2f}, n {lat['n']})",
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
            f"(c) cold load, {steps}-step run ({big['megabytes']:.0f} MB): first poll + first build",
            "< 5 s",
            f"{big['cold']['total_s']:.2f} s (poll {big['cold']['poll_s']:.2f} + first build {big['cold']['first_build_s']:.2f})",
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
    args.output_dir.mkdir(parents=True, exist_ok=True)
    header = [
        "# Dashboard speed on cpu",
        "",
        f"- command: `{env['command']}`",
        f"- date: {env['date']}",
        f"- python {env['python']}, dash {env['dash']}, plotly {env['plotly']}, "
        f"pandas {env['pandas']}, numpy {env['numpy']}, Chromium {lat['chromium']}",
        f"- {env['platform']}, CPUs: {env['cpu_count']}",
        "- load average at start / end: "
        + " ".join(f"{x:.2f}" for x in env["load_average_start"])
        + " / "
        + " ".join(f"{x:.2f}" for x in env["load_average_end"]),
        f"- records: the digits CNN's, economy preset (about 80 numbers and a 64-bin "
        f"histogram per step), {big['lines']:,} lines",
        f"- wall time: {env['wall_s']:.0f} s",
        "",
    ]
    (args.output_dir / "dashboard-cpu.md").write_text(
        "\n".join(header) + "\n" + text + "\n"
    )
    (args.output_dir / "dashboard-cpu.json").write_text(
        json.dumps(results, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
