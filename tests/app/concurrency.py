"""Training processes write runs while the dashboard serves them: was every step seen?

:func:`watch` starts ``cockpit serve LOGDIR`` and :data:`TRAINERS` training processes
(``tests/app/tracked_trainer.py``, each its own run under LOGDIR), and asks the
server over HTTP, through Dash's callback route as the page does, what it shows while
they train and until it has shown every step they wrote:

* the poll (``data-version``), with every run selected, so the server reads them;
* the "performance" group's figures for every run (the loss panel and its
  neighbours), as a page would redraw them;
* the comparison panel's ``loss`` of one run at a time, in windows of at most
  :data:`WINDOW` steps (fewer than a trace's points budget, so nothing is
  downsampled away), starting after the last step seen without a gap.

Every response must be 200 (or 204, Dash's "nothing to update"); a gap in a run's
steps in a window, a step the server showed that no process wrote, or a run that stops
short of what its process wrote is an error. The test (``test_concurrency.py``) runs
it for seconds, ``benchmarks/dashboard_concurrency.py`` for minutes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cockpit.app.throttle import CHECK_S
from cockpit.logs import LogReader
from tests.app.test_browser import serving

ROOT = Path(__file__).resolve().parents[2]
TRAINERS = 3
#: Steps per window of the comparison panel: under ``View.max_points`` (600).
WINDOW = 500
#: Seconds the server gets, after the last trainer ended, to show every step.
CATCH_UP_S = 60.0


@dataclass
class Watch:
    """What the dashboard served while the trainers wrote.

    Attributes:
        trained: Run -> steps its process reported training.
        written: Run -> steps in its ``steps.jsonl`` at the end (0, 1, ... n - 1).
        seen: Run -> steps the server showed, from 0 without a gap.
        requests: HTTP requests sent to the server.
        errors: Every failed request, gap or unknown step, with what came.
        seconds: Wall time from starting the trainers to the last check.

    """

    trained: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class DashClient:
    """Calls the server's Dash callbacks over HTTP, as the page does.

    Args:
        url: The dashboard's address, ``http://127.0.0.1:PORT/``.
        watch: Counts the requests and collects the errors.

    """

    def __init__(self, url: str, watch: Watch) -> None:
        self.url = url
        self.watch = watch
        with urllib.request.urlopen(url + "_dash-dependencies", timeout=30) as page:
            self.callbacks = {c["output"]: c for c in json.load(page)}

    def call(self, output_part: str, values: dict[str, Any]) -> dict[str, Any]:
        """The response of the callback whose output names ``output_part``.

        Args:
            output_part: A part of the callback's output, e.g. ``"compare-graph"``.
            values: ``"id.property"`` -> value of its inputs and state.

        Returns:
            The updated properties (empty for 204, or for an error, noted).

        """
        (output,) = [o for o in self.callbacks if output_part in o]
        spec = self.callbacks[output]

        def props(items: list[dict[str, str]]) -> list[dict[str, Any]]:
            return [
                {**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in items
            ]

        parts = [part.rsplit(".", 1) for part in output.strip(".").split("...")]
        body = {
            "output": output,
            "outputs": [{"id": i, "property": p} for i, p in parts],
            "inputs": props(spec["inputs"]),
            "state": props(spec["state"]),
            "changedPropIds": [],
        }
        request = urllib.request.Request(
            self.url + "_dash-update-component",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        self.watch.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                if response.status == 204:
                    return {}
                return json.load(response)["response"]
        except (OSError, ValueError) as err:  # HTTPError is an OSError
            self.watch.errors.append(f"{output_part}: {type(err).__name__}: {err}")
            return {}


def decode(array: Any) -> np.ndarray:
    """A plotly array as sent: a list, or ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array if array is not None else [])


def shown_steps(response: dict[str, Any], run: str) -> np.ndarray:
    """The steps of ``run`` in a comparison panel's response, sorted, unique."""
    traces = response.get("compare-graph", {}).get("figure", {}).get("data", [])
    steps = [decode(t.get("x")) for t in traces if t.get("legendgroup") == run]
    return np.unique(np.concatenate(steps)) if steps else np.array([], dtype=int)


def view_values(runs: list[str], first: int | None, last: int | None) -> dict:
    """The page's controls: these runs, this step range, the loss compared."""
    return {
        "data-version.data": {"version": 0, "at": 0.0},
        "run-select.value": runs,
        "compare-quantity.value": "loss",
        "layer-select.value": "__model__",
        "step-from.value": first,
        "step-to.value": last,
        "y-scale.value": "auto",
        "x-scale.value": "linear",
        "performance-figure-keys.data": {},
    }


def check_window(client: DashClient, run: str, watch: Watch) -> None:
    """Ask for the next window of ``run``'s loss; extend ``seen`` over it."""
    first = watch.seen.get(run, 0)
    response = client.call("compare-graph", view_values([run], first, first + WINDOW))
    steps = shown_steps(response, run)
    expected = np.arange(first, first + len(steps))
    if not np.array_equal(steps, expected):
        missing = sorted(set(expected.tolist()) - set(steps.tolist()))[:5]
        watch.errors.append(
            f"{run}: steps from {first} shown with a gap, first missing {missing}"
        )
        return
    watch.seen[run] = first + len(steps)


def round_of_requests(client: DashClient, runs: list[str], watch: Watch) -> None:
    """One round as an open page makes it: poll, redraw a group, the comparisons.

    Then a pause of a page's check interval.
    """
    client.call(
        "data-version",
        {"run-select.value": runs, "url.search": "", "data-version.data": {}},
    )
    client.call("performance-figure-keys", view_values(runs, None, None))
    for run in runs:
        check_window(client, run, watch)
    time.sleep(CHECK_S)


def start_trainers(logdir: Path, seconds: float, pause: float) -> dict[str, Any]:
    """:data:`TRAINERS` tracked training processes, run name -> process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return {
        f"trainer-{index}": subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.app.tracked_trainer", str(logdir)),
                *(f"trainer-{index}", "--seconds", str(seconds)),
                *("--pause", str(pause), "--seed", str(index)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(TRAINERS)
    }


def written_steps(run_dir: Path, watch: Watch) -> int:
    """How many steps ``run_dir`` holds; an error unless they are 0, 1, ... n - 1."""
    records = LogReader(run_dir).read_new()
    steps = sorted(r["step"] for r in records if "loss" in r.get("values", {}))
    if steps != list(range(len(steps))):
        watch.errors.append(f"{run_dir.name}: the log's steps are not 0 to n - 1")
    return len(steps)


def watch(logdir: Path, seconds: float, pause: float = 0.0) -> Watch:
    """Train :data:`TRAINERS` runs for ``seconds`` while the dashboard serves them.

    Args:
        logdir: An empty directory.
        seconds: How long each process trains.
        pause: Seconds each process sleeps after a step (fewer steps, less CPU).

    Returns:
        What was trained, written and served, and every error.

    """
    result = Watch()
    start = time.monotonic()
    with serving(logdir) as url:
        client = DashClient(url, result)
        trainers = start_trainers(logdir, seconds, pause)
        runs = sorted(trainers)
        try:
            while any(p.poll() is None for p in trainers.values()):
                round_of_requests(client, runs, result)
        finally:
            for name, process in trainers.items():
                out, _ = process.communicate(timeout=120)
                if process.returncode != 0:
                    result.errors.append(f"{name}: exit {process.returncode}")
                    continue
                result.trained[name] = json.loads(out.splitlines()[-1])["steps"]
        result.written = {run: written_steps(logdir / run, result) for run in runs}
        deadline = time.monotonic() + CATCH_UP_S
        while result.seen != result.written and time.monotonic() < deadline:
            round_of_requests(client, runs, result)
    result.seconds = time.monotonic() - start
    for run in runs:
        if result.seen.get(run, 0) != result.written[run]:
            result.errors.append(
                f"{run}: the server showed {result.seen.get(run, 0)} of its "
                f"{result.written[run]} steps"
            )
    return result
