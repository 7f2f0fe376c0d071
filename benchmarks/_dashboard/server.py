"""(b) and (c): what a long run costs the server, each part in a fresh process.

The children are ``dashboard.py --serve-child`` and ``--phases-child``.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _dashboard.records import repeated, write_run
from _dashboard.report import log, summary

SCRIPT = Path(__file__).resolve().parent.parent / "dashboard.py"
"""The entry point, run again for the fresh processes."""


def figures_requests(app, name: str) -> list[dict[str, Any]]:
    """The bodies of the page's requests for every figure of run ``name``.

    One request per group of panels (``*-figure-keys``), as the page sends them.
    """
    return [
        _figures_request(app, output, name)
        for output in app.callback_map
        if "-figure-keys.data" in output
    ]


def _figures_request(app, output: str, name: str) -> dict[str, Any]:
    callback = app.callback_map[output]
    values = {
        "data-version.data": {"version": 1, "at": 0.0},
        "run-select.value": [name],
        "layer-select.value": "__model__",
        "y-scale.value": "auto",
        "x-scale.value": "linear",
    }

    def props(items: list[dict[str, str]], default: Any) -> list[dict[str, Any]]:
        return [
            {**item, "value": values.get(f"{item['id']}.{item['property']}", default)}
            for item in items
        ]

    outputs = [part.rsplit(".", 1) for part in output.strip(".").split("...")]
    return {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": props(callback["inputs"], None),
        "state": props(callback["state"], {}),  # the figure keys: none drawn
        "changedPropIds": ["data-version.data"],
    }


def timed_requests(client, bodies: list[dict[str, Any]]) -> tuple[float, list[bytes]]:
    """Seconds for all of ``bodies``, one after the other; the responses."""
    start = time.perf_counter()
    responses = [client.post("/_dash-update-component", json=body) for body in bodies]
    elapsed = time.perf_counter() - start
    for response in responses:
        assert response.status_code == 200, response.status_code
    return elapsed, [response.data for response in responses]


def with_keys(body: dict[str, Any], data: bytes) -> dict[str, Any]:
    """``body`` carrying the figure keys its response ``data`` sent to the page."""
    (keys,) = [
        v["data"] for k, v in json.loads(data)["response"].items() if "keys" in k
    ]
    return {**body, "state": [{**body["state"][0], "value": keys}]}


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
    bodies = figures_requests(app, "long")
    extra = json.loads((logdir / "extra.json").read_text())
    start = time.perf_counter()
    store.poll()
    first_poll = time.perf_counter() - start
    polls = 1
    # A poll reads a bounded part of a run (cockpit.app.store.POLL_BYTES): a long
    # run fills in over several; the live step below must find it all read.
    while store.state("long").data.last_step != extra[0]["step"] - 1:
        store.poll()
        polls += 1
    load = time.perf_counter() - start
    first_build, data = timed_requests(client, bodies)
    builds = [timed_requests(client, bodies)[0] for _ in range(repeats)]
    with (logdir / "long" / "steps.jsonl").open("a", encoding="utf-8") as steps:
        steps.writelines(encode_record(record)[0] + "\n" for record in extra)
    start = time.perf_counter()
    store.poll()
    live_bodies = [with_keys(b, d) for b, d in zip(bodies, data, strict=True)]
    live = time.perf_counter() - start + timed_requests(client, live_bodies)[0]
    return {
        "response_megabytes": sum(map(len, data)) / 1e6,
        "cold": {
            "first_poll_s": first_poll,
            "polls": polls,
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
    command = [sys.executable, str(SCRIPT), flag, str(path), *more]
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
