"""Voila shows the live chart, and hides the chart's static output.

A real `pulseboard serve` with known data and a real `voila` process serving a notebook that
displays a LiveChart; chromium opens the page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from report_support import BIN, kernel_env, known_values, publish

from harness.browsers import chromium
from harness.notebooks import notebook
from harness.servers import ServerProcess, free_port, wait_until

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_voila_shows_the_live_chart_not_the_static_one(server: ServerProcess, tmp_path: Path) -> None:
    known = known_values(30)
    publish(server.url, [{"ch": "test.voila", "data": {"step": s, "v": v}} for s, v in known])
    notebook(tmp_path / "app.ipynb", [
        "from pulseboard import LiveChart\nLiveChart('test.voila', fields=['v'], x='step', title='voila')",
    ])
    port = free_port()
    env = kernel_env(server.url)
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    log = (tmp_path / "voila.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "voila"), "app.ipynb", f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"voila exited with {proc.returncode}: {(tmp_path / 'voila.log').read_text()}")
            return answers(f"http://127.0.0.1:{port}/voila/static/voila.js")

        wait_until(up, timeout=60, interval=0.2, what="voila to answer")
        with chromium() as browser:
            page: Any = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                page.goto(f"http://127.0.0.1:{port}/")
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
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
