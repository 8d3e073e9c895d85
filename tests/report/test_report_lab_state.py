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
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyterlab  # noqa: F401  (the test extra installs it: scripts/setup)
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from report_support import known_values, nbconvert, publish, pulseboard, report_data

from harness.browsers import chromium
from harness.charts import drag_zoom
from harness.hub import http
from harness.jupyter import JupyterLabProcess, run_all
from harness.notebooks import notebook
from harness.servers import ServerProcess, wait_until
from harness.tokens import token
from pulseboard.svg import CHART_MIME

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

CH = "test.lab"
WIDGETS_SETTINGS = "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings"
STATE = "application/vnd.jupyter.widget-state+json"
# Screenshots of what the user sees (for the docs and notes) go here; a temp dir by default.
SHOTS = Path(os.environ.get("PULSEBOARD_SHOTS_DIR") or tempfile.gettempdir())
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@pytest.fixture
def lab(server: ServerProcess) -> Iterator[tuple[JupyterLabProcess, Path, str]]:
    root = Path(tempfile.mkdtemp(prefix="pb-report-nb-"))
    notebook(root / "saved.ipynb", [
        f"from pulseboard import LiveChart\nchart = LiveChart({CH!r}, fields=['v', 'w'], x='step', title='lab')\nchart",
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
            run_all(page, jlab, "saved.ipynb")
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


def saved_chart(path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The saved chart's widget state, its static output's options and its static SVG."""
    nb = json.loads(path.read_text())
    [state] = [m["state"] for m in nb["metadata"]["widgets"][STATE]["state"].values() if "_static_id" in m["state"]]
    [static] = [o["data"] for o in nb["cells"][0]["outputs"] if CHART_MIME in o.get("data", {})]
    return state, static[CHART_MIME]["options"], "".join(static["text/html"])


def saved_view(path: Path) -> dict[str, Any]:
    try:
        return saved_chart(path)[0]
    except (KeyError, ValueError):
        return {}


def test_the_view_set_in_the_browser_is_saved_reported_and_reopens_without_a_kernel(
    lab: Any, server: ServerProcess,
) -> None:
    jlab, root, _ = lab
    known = known_values(60)
    publish(server.url, [{"ch": CH, "data": {"step": s, "v": v, "w": v / 2}} for s, v in known])
    nb_path = root / "saved.ipynb"
    before = nb_path.read_text()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            run_all(page, jlab, "saved.ipynb")
            chart = page.locator(".pulseboard-chart[data-status=live]")
            chart.wait_for(timeout=60_000)
            wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "2", timeout=30,
                       what="both series drawn")
            # What a person does: log y, smoothing on, drag-zoom, hide `w` in the legend.
            # (The legend first: with smoothing on, a legend click misses; see the chart's toolbar details.)
            page.locator(".pulseboard-chart .u-legend .u-series").nth(2).click()  # w
            wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "1", what="w hidden")
            page.locator(".pulseboard-chart [data-action=log-y]").click()
            page.locator(".pulseboard-chart [data-action=smooth]").click()
            drag_zoom(page, 0.25, 0.75, ".pulseboard-chart .u-over")
            smooth_text = page.locator(".pulseboard-chart [data-action=smooth]").inner_text()
            smoothing = float(smooth_text.split()[1])
            # The kernel got the view: it redrew the static output with it (the output is hidden in Lab).
            # All of it before saving: each change is a redraw of its own, and the last may come late.
            def static_has_the_view() -> bool:
                html = page.locator("[data-pulseboard-static]").inner_html()
                # (The corner note names smoothing and zoom: `log y · smoothing 0.6 · zoomed`.)
                return all(mark in html for mark in ('data-log-y="true"', 'data-hidden="true"', "smoothing ",
                                                     "zoomed"))

            wait_until(static_has_the_view, timeout=30, what="the kernel's static output with the whole view")
            page.locator(".jp-Notebook").click()
            page.keyboard.press("Control+s")
            wait_until(lambda: nb_path.read_text() != before and saved_view(nb_path).get("log_y") is True,
                       timeout=30, what="the saved notebook with the view")
            state, static_opts, static_html = saved_chart(nb_path)
            for where, view in (("widget state", state), ("static output", static_opts)):
                assert view["zoom"] is not None, f"the saved {where} has no zoom: {view}"
                assert view["log_y"] is True and view["hidden"] == ["w"]
                assert view["smoothing"] == pytest.approx(smoothing)
                z0, z1 = view["zoom"]
                assert known[0][0] < z0 < z1 < known[-1][0]  # a middle part of the steps
            assert 'data-log-y="true"' in static_html and 'data-hidden="true"' in static_html

            # Reopened without its kernel: the tab is left, the kernel shut down, the notebook opened
            # again (JupyterLab starts a new kernel, which has no chart: the chart comes from the saved
            # state). Leaving first and waiting until Jupyter lists no session means the reopened page
            # can't meet the old session: ipywidgets asks a session's kernel for its widgets before it
            # reads the saved state, and gives up on the saved state if that kernel is gone.
            page.goto("about:blank")
            for k in jlab.api("kernels"):
                http("DELETE", f"{jlab.url}/api/kernels/{k['id']}", token=jlab.token)
            wait_until(lambda: jlab.api("sessions") == [], timeout=30, what="Jupyter to list no session")
            page.goto(f"{jlab.url}/lab/tree/saved.ipynb?token={jlab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            try:
                page.locator(".pulseboard-chart").wait_for(timeout=60_000)
            except PlaywrightTimeout:
                shown = page.locator(".jp-Notebook").inner_text()
                raise AssertionError(f"the reopened notebook shows no chart; it shows: {shown[-2000:]!r}\n"
                                     f"sessions: {jlab.api('sessions')}\nJupyterLab's log ends:\n"
                                     f"{jlab.output()[-3000:]}") from None
            wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "1", timeout=30,
                       what="the saved chart drawn (w hidden)")
            text = page.locator(".jp-Notebook").inner_text()
            assert "Error displaying widget" not in text
            assert page.locator(".pulseboard-chart [data-action=log-y]").get_attribute("aria-pressed") == "true"
            page.locator(".pulseboard-chart").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "reopened-with-widget-state.png"))

            # The same notebook saved without widget state (JupyterLab's default): the static chart
            # shows, and no "model not found" line.
            data = json.loads(nb_path.read_text())
            data["metadata"].pop("widgets")
            (root / "nostate.ipynb").write_text(json.dumps(data))
            # Signed as JupyterLab signs what it saves (else its HTML output is sanitized).
            subprocess.run([sys.executable, "-m", "jupyter", "trust", str(root / "nostate.ipynb")], env=jlab.env,
                           check=True, capture_output=True, timeout=60)
            # (`reset`: a fresh workspace, without the tab of saved.ipynb, whose live chart would hide
            # the static output of the same id.)
            page.goto(f"{jlab.url}/lab/tree/nostate.ipynb?reset&token={jlab.token}")
            page.wait_for_selector(".jp-Notebook svg.pulseboard-svg", timeout=60_000)
            wait_until(lambda: "Loading widget" not in page.locator(".jp-Notebook").inner_text(), timeout=30,
                       what="the widget output to settle")
            assert page.locator(".jp-Notebook svg.pulseboard-svg").is_visible()
            assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
            page.locator(".jp-Notebook svg.pulseboard-svg").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "reopened-without-widget-state.png"))

            # The report shows the chart as it was on screen.
            pulseboard("report", "saved.ipynb", "-o", "view.html", env=dict(os.environ), cwd=root)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto((root / "view.html").as_uri())
            page.wait_for_selector(".pulseboard-chart[data-status=report]")
            h = "document.querySelector('.pulseboard-chart').__pulseboard"
            wait_until(lambda: page.evaluate(f"{h}.idle()"), what="the report chart drawn")
            drawn = page.evaluate(f"{h}.range()")
            assert drawn["log"] is True and drawn["zoomed"] is True
            assert drawn["x"] == pytest.approx(state["zoom"])
            assert page.get_attribute(".pulseboard-chart", "data-series") == "1"
            assert page.locator("[data-action=smooth]").inner_text() == smooth_text
            page.locator(".pulseboard-chart").screenshot(path=str(SHOTS / "report-with-view.png"))
            # And plain nbconvert's static SVG too.
            nbconvert("--to", "html", "saved.ipynb", "--output", "view-plain.html", env=dict(os.environ), cwd=root)
            page.goto((root / "view-plain.html").as_uri())
            svg = page.locator("svg.pulseboard-svg").first
            svg.wait_for(state="attached")
            assert svg.get_attribute("data-log-y") == "true"
            assert page.locator("svg.pulseboard-svg .pulseboard-legend[data-hidden=true]").count() == 1
        finally:
            browser.close()
