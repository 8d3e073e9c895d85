"""Plain JupyterLab with jupyter-server-proxy: no Hub, no pulseboard settings at all.

`LiveChart("sys.<host>")` makes the kernel ask its Jupyter server for /pulseboard/, which
starts `pulseboard serve` on demand; the chart goes live in chromium through Jupyter's
proxy. The notebook, saved with its widget state, holds no token: neither the one the
chart used nor the caller's full token; a second chart, whose view-token call fails, says so
and is given no token at all (it never falls back to the caller's full token).
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import chart_state
from harness.jupyter import JupyterLabProcess, kernel_idle
from harness.notebooks import notebook
from harness.servers import ServerProcess, free_port, wait_until
from harness.tokens import token
from pulseboard.discovery import DiscoveryError, discover

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

HOST = "sys." + socket.gethostname()
FULL = token(sub="caller", read=["*"], publish=["*"])  # must never reach the saved notebook
WIDGET_SETTINGS = "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[JupyterLabProcess, Path]]:
    root = Path(tempfile.mkdtemp(prefix="pb-proxylab-"))
    dead = f"http://127.0.0.1:{free_port()}"
    notebook(root / "proxy.ipynb", [
        f"from pulseboard import LiveChart\nchart = LiveChart({HOST!r}, fields=['cpu_percent'], window=60)\nchart",
        # view-token fails here (nothing listens): the chart says so, and the browser gets no
        # token (never the caller's full one).
        f"import os\nLiveChart('demo.down', url={dead!r}, token=os.environ['PB_TEST_FULL_TOKEN'])",
    ])
    jlab = JupyterLabProcess(root, env={"PB_TEST_FULL_TOKEN": FULL})
    for name in list(jlab.env):
        if name.startswith(("PULSEBOARD_", "JUPYTERHUB_")):
            del jlab.env[name]
    # $XDG_DATA_HOME: this lab's own, not ~/.local/share, which another run on this machine may hold.
    jlab.env["XDG_DATA_HOME"] = str(jlab.home / "data")
    # The user's own `pulseboard serve` holds the default store (one server per store): the
    # on-demand server must keep its data elsewhere, not fail to start.
    own = ServerProcess(env={"PULSEBOARD_DATA_DIR": str(jlab.home / "data" / "pulseboard")}).start()
    settings = jlab.home / "settings" / WIDGET_SETTINGS
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"saveState": True}))  # so the saved notebook holds widget state
    try:
        yield jlab.start(), root
    finally:
        jlab.stop()
        own.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_discovery_says_what_it_tried_without_a_jupyter_server() -> None:
    with pytest.raises(DiscoveryError) as err:
        discover(env={"JUPYTER_RUNTIME_DIR": tempfile.mkdtemp(prefix="pb-noruntime-")})
    assert "jupyter-server-proxy" in err.value.detail and "does not run under a Jupyter server" in err.value.detail


def test_livechart_goes_live_through_jupyter_server_proxy_and_saves_no_token(
    lab: tuple[JupyterLabProcess, Path], browser: Any
) -> None:
    jlab, root = lab
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        page.goto(f"{jlab.url}/lab/tree/proxy.ipynb?token={jlab.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)

        def ready() -> bool:
            select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
            if select.count():
                select.click()
            return kernel_idle(jlab)

        wait_until(ready, timeout=60, interval=0.2, what="the notebook's kernel to be idle")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        state = wait_until(lambda: (s := chart_state(page, HOST))["status"] == "live" and s["points"] >= 2 and s,
                           timeout=90, interval=0.2, what="the host chart live through /pulseboard/")
        wait_until(lambda: chart_state(page, HOST)["points"] > state["points"] + 2, timeout=30, interval=0.2,
                   what="the host chart to grow")
        # Started on demand by jupyter-server-proxy, through our entry point, on a store of its own.
        assert list(Path(jlab.env["JUPYTER_RUNTIME_DIR"]).glob("pulseboard-proxy-*.json"))
        assert (jlab.home / "data" / "pulseboard" / "jupyterlab" / "pulseboard.db").exists()
        # The second chart's view-token call failed: it says why and holds no token.
        down = page.locator(".jp-CodeCell").nth(1).locator(".pulseboard-chart")
        down.wait_for(timeout=30_000)
        assert "does not fall back to your full token" in down.locator(".pulseboard-message").inner_text()
        assert FULL not in page.content()

        page.keyboard.press("Control+s")
        saved = root / "proxy.ipynb"
        wait_until(lambda: "application/vnd.jupyter.widget-state+json" in saved.read_text(), timeout=30,
                   interval=0.2, what="the notebook saved with its widget state")
        text = saved.read_text()
        assert HOST in text and "demo.down" in text  # the widgets' state is there...
        assert FULL not in text  # ...but not the caller's token,
        assert "eyJ" not in text  # nor any JWT (header `{"` in base64url),
        secret = (Path(jlab.env["JUPYTER_RUNTIME_DIR"]) / "pulseboard-proxy-secret").read_text().strip()
        assert secret not in text  # nor the proxied server's secret.
    finally:
        ctx.close()
