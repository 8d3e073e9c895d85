"""The quickstart notebook in a real JupyterLab, driven by headless chromium.

A real `pulseboard serve` (host collector every 0.5 s) and a real `jupyter lab` (token
auth, free port, a temp root dir holding a copy of notebooks/quickstart.ipynb) whose
kernels get PULSEBOARD_URL/PULSEBOARD_TOKEN. Chromium opens the notebook and runs all
cells; the widgets go live, and while the last cell keeps the kernel busy for 10 s the
host chart's point count keeps growing.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_support import CHROMIUM, CHROMIUM_ARGS, JupyterLabProcess
from support import ROOT, ServerProcess, token, wait_until

pytest.importorskip("jupyterlab", reason="needs JupyterLab (pip install jupyterlab)")
playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
WIDGET_JS = ROOT / "widget" / "pulseboard" / "static" / "widget.js"
SCREENSHOT = ROOT / "docs" / "img" / "notebook.png"
HOST_CHANNEL = "sys." + socket.gethostname()
TRAIN_CHANNEL = "demo.train"


@pytest.fixture
def lab(server_factory) -> Iterator[JupyterLabProcess]:  # type: ignore[no-untyped-def]
    if WIDGET_JS.stat().st_size < 1000:
        pytest.fail("the widget bundle is not built: run `cd js && npm ci && npm run build`")
    server: ServerProcess = server_factory("--collect-interval", "0.5")
    root = Path(tempfile.mkdtemp(prefix="pb-nb-"))
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    env = {
        "PULSEBOARD_URL": server.url,
        "PULSEBOARD_TOKEN": token("notebook", read=["*"], publish=["*"]),
    }
    jlab = JupyterLabProcess(root, env=env)
    try:
        jlab.start()
        yield jlab
    finally:
        jlab.stop()
        shutil.rmtree(root, ignore_errors=True)


def chart_points(page, channel: str) -> int:  # type: ignore[no-untyped-def]
    """Points the chart of `channel` holds, read through the widget's debug hook."""
    n: int = page.evaluate(
        """(ch) => {
            for (const el of document.querySelectorAll('.pulseboard-chart')) {
                const hook = el.__pulseboard;
                if (hook && hook.series().some((s) => s.startsWith(ch + ':'))) return hook.points();
            }
            return -1;
        }""",
        channel,
    )
    return n


def chart_seqs(page, channel: str) -> list[int]:  # type: ignore[no-untyped-def]
    seqs: list[int] = page.evaluate(
        """(ch) => {
            for (const el of document.querySelectorAll('.pulseboard-chart')) {
                const hook = el.__pulseboard;
                if (hook && hook.series().some((s) => s.startsWith(ch + ':'))) return hook.seqs(ch);
            }
            return [];
        }""",
        channel,
    )
    return seqs


def busy_cell_running(page) -> bool:  # type: ignore[no-untyped-def]
    """The `time.sleep(10)` cell is executing (its prompt shows [*])."""
    prompt = page.locator(".jp-CodeCell", has_text="time.sleep(10)").locator(".jp-InputPrompt")
    return "*" in prompt.inner_text()


def busy_cell_done(page) -> bool:  # type: ignore[no-untyped-def]
    cell = page.locator(".jp-CodeCell", has_text="time.sleep(10)")
    return "done" in cell.locator(".jp-OutputArea").inner_text()


def test_quickstart_notebook_stays_live_while_the_kernel_sleeps(
    lab: JupyterLabProcess,
) -> None:
    jlab = lab
    started = time.monotonic()
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{jlab.url}/lab/tree/{NOTEBOOK.name}?token={jlab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # The kernel must be up before Run All, or the run waits on a kernel dialog.
            wait_until(lambda: any(k["execution_state"] == "idle" for k in jlab.api("kernels")),
                       timeout=60, interval=0.2, what="the notebook's kernel to be idle")

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            page.wait_for_selector(".pulseboard-chart[data-status=live]", timeout=60_000)
            wait_until(lambda: page.locator(".pulseboard-chart[data-status=live]").count() == 2,
                       timeout=30, what="both charts to go live")

            # The training loop published 50 steps; the loss chart holds every one, once.
            wait_until(lambda: chart_seqs(page, TRAIN_CHANNEL) == list(range(1, 51)), timeout=60,
                       what="the loss chart to hold steps 1-50")

            # Now the kernel sleeps 10 s: the host chart must keep moving meanwhile.
            wait_until(lambda: busy_cell_running(page), timeout=30, what="the busy cell to start")
            first = chart_points(page, HOST_CHANNEL)
            assert first > 0, "the host chart holds no points"
            wait_until(lambda: chart_points(page, HOST_CHANNEL) >= first + 4, timeout=8,
                       what="the host chart to grow while the kernel is busy")
            second = chart_points(page, HOST_CHANNEL)
            assert busy_cell_running(page), "the busy cell finished before the chart was seen growing"
            assert not busy_cell_done(page)
            assert second >= first + 4

            # The screenshot for the docs: the live host chart in the notebook, sidebar closed.
            page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click(timeout=5000)
            page.locator(".jp-CodeCell", has_text="host_chart = LiveChart").scroll_into_view_if_needed()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            wait_until(lambda: busy_cell_done(page), timeout=30, what="the busy cell to finish")
            assert chart_points(page, HOST_CHANNEL) > second
            assert errors == []
        finally:
            browser.close()
    print(f"\nJupyterLab notebook test: {time.monotonic() - started:.1f} s in the browser")
