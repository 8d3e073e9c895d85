"""A notebook saved from a real JupyterLab session holds its charts' data and no token at all.

A real `pulseboard serve` with known data, a real `jupyter lab` (widget state saved with the
notebook, as users turn on), chromium runs the notebook and saves it. The saved file holds
the chart's snapshot in the widget state and the static SVG output (hidden in Lab while the
live chart shows), no token that can publish, and makes a report with no token at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyterlab  # noqa: F401  (the test extra installs it: scripts/setup)
import pytest
from report_support import known_values, publish, pulseboard, report_data

from harness.browsers import chromium
from harness.jupyter import JupyterLabProcess
from harness.notebooks import notebook
from harness.servers import ServerProcess, wait_until
from harness.tokens import token

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

CH = "test.lab"
WIDGETS_SETTINGS = "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings"
STATE = "application/vnd.jupyter.widget-state+json"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@pytest.fixture
def lab(server: ServerProcess) -> Iterator[tuple[JupyterLabProcess, Path, str]]:
    root = Path(tempfile.mkdtemp(prefix="pb-report-nb-"))
    notebook(root / "saved.ipynb", [
        f"from pulseboard import LiveChart\nchart = LiveChart({CH!r}, fields=['v'], x='step', title='lab')\nchart",
    ])
    kernel_token = token("notebook", read=["*"], publish=["*"])
    jlab = JupyterLabProcess(root, env={"PULSEBOARD_URL": server.url, "PULSEBOARD_TOKEN": kernel_token})
    settings = jlab.home / "settings" / WIDGETS_SETTINGS
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"saveState": True}))
    try:
        jlab.start()
        yield jlab, root, kernel_token
    finally:
        jlab.stop()
        shutil.rmtree(root, ignore_errors=True)


def accepted(server: ServerProcess, jwt: str) -> bool:
    req = urllib.request.Request(f"{server.url}/history?ch={CH}", headers={"Authorization": f"Bearer {jwt}"})
    try:
        with urllib.request.urlopen(req, timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


def test_saved_notebook_holds_the_snapshot_and_no_token(lab: Any, server: ServerProcess, tmp_path: Path) -> None:
    shot_dir = tmp_path
    jlab, root, kernel_token = lab
    known = known_values(40)
    publish(server.url, [{"ch": CH, "data": {"step": s, "v": v}} for s, v in known])
    before = (root / "saved.ipynb").read_text()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(f"{jlab.url}/lab/tree/saved.ipynb?token={jlab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_until(lambda: any(k["execution_state"] == "idle" for k in jlab.api("kernels")),
                       timeout=60, interval=0.2, what="the notebook's kernel to be idle")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.wait_for_selector(".pulseboard-chart[data-status=live]", timeout=60_000)
            # Lab shows the live chart; the static SVG output is there but hidden.
            static = page.locator("[data-pulseboard-static]")
            wait_until(lambda: static.count() == 1, timeout=30, what="the static output")
            assert not static.is_visible()
            page.locator(".pulseboard-chart").scroll_into_view_if_needed()
            page.screenshot(path=str(shot_dir / "lab.png"))
            page.locator(".jp-Notebook").click()
            page.keyboard.press("Control+s")
            wait_until(lambda: (root / "saved.ipynb").read_text() != before and
                       STATE in (root / "saved.ipynb").read_text(), timeout=30, what="the saved notebook")
        finally:
            browser.close()

    text = (root / "saved.ipynb").read_text()
    nb = json.loads(text)
    charts = [m["state"] for m in nb["metadata"]["widgets"][STATE]["state"].values() if "_static_id" in m["state"]]
    assert len(charts) == 1
    snap = charts[0]["_snapshot"]
    assert snap["x"] == [float(s) for s, _ in known] and snap["y"][0] == [v for _, v in known]
    outputs = nb["cells"][0]["outputs"]
    html = ["".join(o.get("data", {}).get("text/html", "")) for o in outputs]  # saved as a list of lines
    assert any("pulseboard-svg" in h for h in html)
    # No token: not the kernel's; the snapshot and the static output hold nothing JWT-shaped.
    assert kernel_token not in text
    assert not JWT.search(json.dumps(snap)) and not any(JWT.search(h) for h in html)
    # The token reaches the browser in messages only so a shared notebook leaks no credential: nothing saved is usable.
    assert "token" not in charts[0]
    usable = [t for t in JWT.findall(text) if accepted(server, t)]
    assert usable == [], "the saved notebook holds a token the server accepts"

    # The saved notebook makes a report (no kernel: from what was saved), and it holds no token.
    pulseboard("report", "saved.ipynb", "-o", "saved.html", env=dict(os.environ), cwd=root)
    page_html = (root / "saved.html").read_text()
    [spec] = report_data(page_html)
    assert spec["snapshot"]["x"] == [float(s) for s, _ in known]
    assert not JWT.search(page_html)
