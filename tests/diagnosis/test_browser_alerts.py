"""A failing run shows its alert at the top of the dashboard, in headless Chromium."""

from __future__ import annotations

import pytest

from cockpit.logs import RunWriter
from tests.app.test_browser import ARGS, CHROMIUM, screenshot, serving
from tests.instruments.synthetic import records

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium)",
)


def write_failing_run(run_dir) -> None:
    """Synthetic economy steps 0-29 whose loss turns NaN from step 20 on."""
    with RunWriter(run_dir, {"run_name": run_dir.name, "preset": "economy"}) as writer:
        for one in records(30, curvature=False):
            if one["step"] >= 20 and "loss" in one["values"]:
                one = {
                    **one,
                    "values": {**one["values"], "loss": {"total": float("nan")}},
                }
            writer.submit(one)


def test_failing_run_shows_its_alert_at_the_top(tmp_path):
    from playwright.sync_api import sync_playwright

    write_failing_run(tmp_path / "failing")
    log = (tmp_path / "serve.log").open("w")
    with log, serving(tmp_path, log) as address:
        url = f"{address}?run=failing"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=ARGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            alert = page.locator("#alerts-summary .alert-error").first
            alert.wait_for(timeout=30_000)
            assert "nonfinite" in alert.inner_text()
            assert "steps 20-29" in alert.inner_text()
            assert alert.locator("a").get_attribute("href") == "#loss-card"
            assert "steps 15-34" in alert.locator("a").inner_text()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#loss-graph .shapelayer path, "
                "#loss-graph .layer-below .shapelayer path')].length > 0",
                timeout=30_000,
            )
            screenshot(page, "diagnosis-failing-run")
            alert.locator("a").click()
            page.wait_for_function("() => location.hash === '#loss-card'")
            # The link also sets the page's step range to the alert's steps.
            page.wait_for_function(
                "() => document.querySelector('#step-from').value === '15' && "
                "document.querySelector('#step-to').value === '34'",
                timeout=30_000,
            )
            screenshot(page, "diagnosis-loss-panel")
            browser.close()
