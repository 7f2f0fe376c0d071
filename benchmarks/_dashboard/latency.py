"""(a) Latency: from a step's line in ``steps.jsonl`` to its point drawn in Chromium.

The page is scrolled to the loss panel, as a person watching it would (the panels out
of view redraw when scrolled to). Timed twice: until the loss panel shows the step, and
until every panel that redraws (those in view) has redrawn.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _dashboard.records import repeated, write_run
from _dashboard.report import log, summary

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


# A person watching the loss: panels out of view wait for new steps until scrolled to.
LOOK_AT_LOSS = (
    "() => document.querySelector('#loss-card').scrollIntoView({block: 'center'})"
)
# Notes when any graph's drawn data last changed (``cockpitRedrawn``, page time in
# ms), checking every 20 ms: plotly replaces ``_fullData`` on each redraw.
WATCH_REDRAWS = """() => {
    const seen = new Map();
    window.cockpitRedrawn = 0;
    const check = () => {
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
            if (gd._fullData && seen.get(gd) !== gd._fullData) {
                if (seen.has(gd)) window.cockpitRedrawn = performance.now();
                seen.set(gd, gd._fullData);
            }
        }
        setTimeout(check, 20);
    };
    check();
}"""
QUIET_S = 1.0
"""Seconds without a redraw after which every panel counts as redrawn."""


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
    total = args.latency_steps + args.appends
    records = repeated(templates, period, total)
    first = [r for r in records if r["step"] < args.latency_steps]
    later = [r for r in records if r["step"] >= args.latency_steps]
    writer = write_run(logdir / "live", meta, first, close=False)
    rng = random.Random(0)
    seconds, every_panel = [], []
    try:
        with dashboard_page(logdir) as (page, browser, _):
            shown = f"({MAX_STEP})() >= {args.latency_steps - 1}"
            page.wait_for_function(f"() => {shown}", timeout=120_000)
            page.evaluate(LOOK_AT_LOSS)
            time.sleep(QUIET_S)
            page.evaluate(WATCH_REDRAWS)
            for step in range(args.latency_steps, total):
                time.sleep(rng.uniform(0.3, 1.3))
                written = page.evaluate("() => performance.now()")
                for record in [r for r in later if r["step"] == step]:
                    writer.submit(record)
                writer.flush()
                start = time.perf_counter()
                page.wait_for_function(
                    f"() => ({MAX_STEP})() >= {step}", timeout=60_000
                )
                seconds.append(time.perf_counter() - start)
                every_panel.append((last_redraw(page) - written) / 1000)
                log(
                    f"  step {step}: loss panel {seconds[-1]:.2f} s, "
                    f"every panel {every_panel[-1]:.2f} s"
                )
            browser_version = browser.version
    finally:
        writer.close()
    return {
        **summary(seconds),
        "seconds": seconds,
        "every_panel": {**summary(every_panel), "seconds": every_panel},
        "chromium": browser_version,
    }


def last_redraw(page) -> float:
    """Page time (ms) of the last redraw, once no graph changed for ``QUIET_S``."""
    last = page.evaluate("() => window.cockpitRedrawn")
    while True:
        time.sleep(QUIET_S)
        now = page.evaluate("() => window.cockpitRedrawn")
        if now == last:
            return now
        last = now


@contextlib.contextmanager
def dashboard_page(logdir: Path, goto: bool = True) -> Iterator[tuple[Any, Any, str]]:
    """``cockpit serve logdir``, and a headless Chromium page on it.

    Yields ``(page, browser, address)``; the page has opened the address unless
    ``goto`` is false.
    """
    from playwright.sync_api import sync_playwright

    port = free_port()
    command = [sys.executable, "-m", "cockpit.app", "serve", str(logdir)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=BROWSER_ARGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            if goto:
                page.goto(url)
            yield page, browser, url
            browser.close()
    finally:
        server.terminate()
        server.wait()
