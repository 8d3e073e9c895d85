"""Voila shows the live chart, and hides the chart's static output.

A real `pulseboard serve` with known data and a real `voila` process serving a notebook that
displays a LiveChart; chromium opens the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_support import kernel_env, known_values, publish

from harness.browsers import chromium
from harness.jupyter import voila
from harness.notebooks import notebook
from harness.servers import ServerProcess, wait_until

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]


def test_voila_shows_the_live_chart_not_the_static_one(server: ServerProcess, tmp_path: Path) -> None:
    known = known_values(30)
    publish(server.url, [{"ch": "test.voila", "data": {"step": s, "v": v}} for s, v in known])
    notebook(tmp_path / "app.ipynb", [
        "from pulseboard import LiveChart\nLiveChart('test.voila', fields=['v'], x='step', title='voila')",
    ])
    env = kernel_env(server.url)
    with voila(tmp_path / "app.ipynb", env) as page_url:
        with chromium() as browser:
            page: Any = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                page.goto(page_url)
                page.wait_for_selector(".pulseboard-chart[data-status=live]", timeout=60_000)
                wait_until(lambda: page.evaluate(
                    "document.querySelector('.pulseboard-chart').__pulseboard.points()") == len(known),
                    timeout=30, what="the live chart to hold the known values")
                static = page.locator("[data-pulseboard-static]")
                assert static.count() == 1, "the static output is missing from the page"
                assert not static.is_visible(), "Voila shows the static copy beside the live chart"
                assert errors == []
            finally:
                browser.close()
