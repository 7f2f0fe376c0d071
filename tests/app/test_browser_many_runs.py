"""A sweep of 100 runs in a real browser: a short run list, filters, lazy loading.

``cockpit serve`` (a subprocess) serves a LOGDIR of 100 finished runs of a learning
rate and seed sweep; headless Chromium loads the page (see ``test_browser.py`` for
the setup and the skip without chromium).
"""

from __future__ import annotations

import re
import time

import pytest

from cockpit.logs import RunWriter
from tests.app import test_browser
from tests.app.test_browser import ARGS, CHROMIUM, DRAWN, LEGEND_GROUPS, serving
from tests.instruments.synthetic import records

pytestmark = test_browser.pytestmark

RATES = (0.1, 0.03, 0.01, 0.003, 0.001)
SEEDS = range(20)
STEPS = 12


def name(lr: float, seed: int) -> str:
    return f"sweep/lr{lr}-seed{seed}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("sweep")
    steps = records(STEPS, curvature=False)
    for index, (lr, seed) in enumerate((lr, s) for lr in RATES for s in SEEDS):
        meta = {
            "run_name": name(lr, seed),
            "start_time": 1.7e9 + index,
            "config": {"lr": lr, "seed": seed},
        }
        with RunWriter(logdir / name(lr, seed), meta) as writer:
            for record in steps:
                writer.submit(record)
    with serving(logdir) as url:
        yield url


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        yield page
        browser.close()
    assert errors == [], f"JavaScript errors in the page: {errors}"


def labels(page) -> list[str]:
    return page.locator("#run-select label").all_inner_texts()


def test_a_sweep_of_100_runs_opens_fast_with_a_short_run_list(page, server):
    start = time.perf_counter()
    page.goto(server)
    page.wait_for_function(DRAWN, arg="loss-graph", timeout=30_000)
    drawn = time.perf_counter() - start
    # The time depends on the machine's load; benchmarks/many_runs.py measures it.
    print(f"first trace drawn {drawn:.2f} s after the page was asked for")
    newest = name(RATES[-1], SEEDS[-1])
    assert page.evaluate(LEGEND_GROUPS, "loss-graph") == [newest]
    # Dash's checklist draws only the options scrolled into view.
    page.wait_for_function(
        "() => document.querySelectorAll('#run-select label').length >= 2"
    )
    shown = labels(page)
    assert shown[0].startswith(f"{newest} (finished, step {STEPS - 1})")
    # Not selected, so not read: listed from meta.json alone.
    assert shown[1] == f"{name(RATES[-1], SEEDS[-2])} (finished)"
    box = page.locator("#run-select").bounding_box()
    assert box is not None and box["height"] <= 170


def test_filter_by_config_select_and_compare(page, server):
    page.goto(server)
    page.wait_for_function(DRAWN, arg="compare-graph", timeout=30_000)
    page.locator("#run-filter").fill("lr=0.1 seed1")
    page.locator("#run-filter").press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#run-count').innerText.includes('11 of 100')"
    )
    shown = labels(page)
    newest = name(RATES[-1], SEEDS[-1])
    assert shown[0].startswith(newest)  # the selection stays listed
    assert sorted(label.split(" ")[0] for label in shown[1:]) == sorted(
        [name(0.1, 1), *(name(0.1, s) for s in range(10, 20))]
    )
    only = re.compile("^" + re.escape(f"{name(0.1, 1)} ("))
    page.locator("#run-select label", has_text=only).click()
    page.wait_for_function(
        f"() => ({LEGEND_GROUPS})('compare-graph').length === 2", timeout=30_000
    )
    assert sorted(page.evaluate(LEGEND_GROUPS, "compare-graph")) == sorted(
        [newest, name(0.1, 1)]
    )
    page.wait_for_function(  # read once selected
        "() => document.querySelectorAll('#run-select label')[1]"
        ".innerText.includes('step')",
        timeout=30_000,
    )
