"""The quickstart notebook in a real JupyterLab, driven by headless chromium.

A real `pulseboard serve` (host collector every 0.5 s) and a real `jupyter lab` (token
auth, free port, a temp root dir holding a copy of notebooks/quickstart.ipynb) whose
kernels get PULSEBOARD_URL/PULSEBOARD_TOKEN. Chromium opens the notebook and runs all
cells; the widgets go live, and while the last cell keeps the kernel busy for 10 s the
host chart's point count keeps growing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import jupyterlab  # noqa: F401  (the test extra installs it: scripts/setup)
import pytest

from harness.browsers import chromium
from harness.hub import ACCESS, HubProcess
from harness.jupyter import LAB_SETTINGS, JupyterLabProcess, chart_points, chart_seqs, kernel_idle, kernel_ready
from harness.notebooks import notebook
from harness.servers import ROOT, ServerProcess, wait_until
from harness.tokens import token

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


def busy_cell_running(page) -> bool:  # type: ignore[no-untyped-def]
    """The `time.sleep(10)` cell is executing (its prompt shows [*])."""
    prompt = page.locator(".jp-CodeCell", has_text="time.sleep(10)").locator(".jp-InputPrompt")
    return "*" in prompt.inner_text()


def busy_cell_done(page) -> bool:  # type: ignore[no-untyped-def]
    cell = page.locator(".jp-CodeCell", has_text="time.sleep(10)")
    return "done" in cell.locator(".jp-OutputArea").inner_text()


def test_quickstart_notebook_stays_live_while_the_kernel_sleeps(
    lab: JupyterLabProcess, tmp_path: Path,
) -> None:
    jlab = lab
    started = time.monotonic()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(f"{jlab.url}/lab/tree/{NOTEBOOK.name}?token={jlab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # The kernel must be up before Run All, or the run waits on a kernel dialog.
            wait_until(
                lambda: kernel_ready(page, lambda: kernel_idle(jlab)),
                timeout=60, interval=0.2, what="the notebook's kernel to be idle",
            )

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
            # docs/img is refreshed with PULSEBOARD_SCREENSHOTS=1; otherwise it goes to a temp dir.
            shot = SCREENSHOT if os.environ.get("PULSEBOARD_SCREENSHOTS") else tmp_path / SCREENSHOT.name
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000

            wait_until(lambda: busy_cell_done(page), timeout=30, what="the busy cell to finish")
            assert chart_points(page, HOST_CHANNEL) > second
            assert errors == []
        finally:
            browser.close()
    print(f"\nJupyterLab notebook test: {time.monotonic() - started:.1f} s in the browser")


# --- the same widget under JupyterHub ---------------------------------------------------

HUB_NOTEBOOK_CELLS = [
    "import socket\nfrom pulseboard import LiveChart\n"
    'chart = LiveChart(f"sys.{socket.gethostname()}", fields=["cpu_percent", "mem_percent"], window=60)\n'
    "chart",
    'print("problem:", chart.problem or "none", "| url:", chart.url)',
    # docs/jupyterhub.md's publishing snippet.
    "import pulseboard\nfrom pulseboard.discovery import discover_for_kernel\n"
    "url, token = discover_for_kernel()\n"
    'print("published seq", pulseboard.publish("user.alice.train", {"loss": 0.42, "step": 7}, '
    "url=url, token=token))",
]


@pytest.fixture
def hub_lab() -> Iterator[tuple[HubProcess, Path]]:
    if WIDGET_JS.stat().st_size < 1000:
        pytest.fail("the widget bundle is not built: run `cd js && npm ci && npm run build`")
    root = Path(tempfile.mkdtemp(prefix="pb-hubnb-"))
    notebook(root / "hub.ipynb", HUB_NOTEBOOK_CELLS)
    settings = root / ".settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    hub = HubProcess(["--collect-interval", "0.5"])
    # What docs/jupyterhub.md tells admins to set: the browser reaches the service through
    # the proxy (same origin), the kernel reaches it directly for the token exchange.
    hub.extra_config = hub.lab_spawner(root, 60) + textwrap.dedent(f"""
        c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", {ACCESS!r}]
        c.Spawner.environment = {{
            "PULSEBOARD_URL": "/services/pulseboard/",
            "PULSEBOARD_HUB_URL": {hub.direct_service_url!r},
            "JUPYTERLAB_SETTINGS_DIR": {str(settings)!r},
            "JUPYTERLAB_WORKSPACES_DIR": {str(root / ".workspaces")!r},
        }}
    """)
    try:
        hub.start()
        yield hub, root
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_widget_under_jupyterhub_gets_its_token_from_the_hub(hub_lab: tuple[HubProcess, Path]) -> None:
    # No PULSEBOARD_TOKEN anywhere: the kernel swaps its JUPYTERHUB_API_TOKEN at the service's
    # `POST token`, and the browser connects through the Hub's proxy, same origin.
    hub, _ = hub_lab
    kernels_idle = """async () => {
        const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
        const r = await fetch('/user/alice/api/kernels', {headers: {'X-XSRFToken': xsrf}});
        return r.ok && (await r.json()).some((k) => k.execution_state === 'idle');
    }"""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            spawn = "/hub/spawn/alice?next=/user/alice/lab/tree/hub.ipynb"
            page.goto(f"{hub.public_url}/hub/login?next={urllib.parse.quote(spawn)}")
            page.fill("#username_input", "alice")
            page.fill("#password_input", "any")
            page.click("#login_submit")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_until(lambda: kernel_ready(page, lambda: bool(page.evaluate(kernels_idle))),
                       timeout=60, interval=0.2,
                       what="the notebook's kernel to be idle")

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            output = page.locator(".jp-CodeCell", has_text="problem:").locator(".jp-OutputArea")
            wait_until(lambda: "problem: none" in output.inner_text(), timeout=60,
                       what="the kernel to find url and token through the Hub")
            assert "url: /services/pulseboard/" in output.inner_text()
            assert "hub: issued a token for alice" in hub.log()
            published = page.locator(".jp-CodeCell", has_text="discover_for_kernel").locator(".jp-OutputArea")
            wait_until(lambda: "published seq 1" in published.inner_text(), timeout=30,
                       what="the kernel to publish with the exchanged token")

            page.wait_for_selector(".pulseboard-chart[data-status=live][data-transport=ws]", timeout=60_000)
            first = chart_points(page, HOST_CHANNEL)
            wait_until(lambda: chart_points(page, HOST_CHANNEL) >= first + 3, timeout=15,
                       what="the chart to grow through the Hub's proxy")
        except Exception:
            print(page.url, page.locator("body").inner_text()[:3000], hub.log()[-6000:], sep="\n")
            raise
        finally:
            browser.close()
