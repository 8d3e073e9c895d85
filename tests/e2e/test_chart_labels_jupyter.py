"""The live chart's painted y labels match the data in a real JupyterLab and in Voila, with
the data arriving after the chart was displayed (a training loss falling from 2 to 0.1)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import chromium
from harness.charts import feed, hook
from harness.jupyter import JupyterLabProcess, kernel_idle, voila
from harness.notebooks import notebook
from harness.painted import check_labels, labels_cover
from harness.servers import ServerProcess, wait_until
from harness.tokens import token

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]

CELL = 'from pulseboard import LiveChart\nLiveChart("demo.r", fields=["loss"], x="step", height=260)'


def loss(i: int) -> float:
    return 2.0 * math.exp(-i / 30) + 0.08


def kernel_env(server: ServerProcess) -> dict[str, str]:
    return {"PULSEBOARD_URL": server.url, "PULSEBOARD_TOKEN": token("notebook", read=["*"], publish=["*"])}


def shot(page: Any, name: str) -> None:
    """Screenshots for the release notes go to $PULSEBOARD_SHOTS when set."""
    where = os.environ.get("PULSEBOARD_SHOTS")
    if where:
        page.locator(".pulseboard-chart").screenshot(path=str(Path(where) / name))


def falling_loss_is_labelled_truly(page: Any, server: ServerProcess, where: str) -> None:
    page.wait_for_selector(".pulseboard-chart[data-status=live]", timeout=60_000)
    color = hook(page, "colors()")[0]

    def check() -> None:
        n = int(hook(page, "range()")["x"][1]) + 1
        if n >= 40:
            check_labels(page, color, lambda x: loss(int(x)) if 0 <= x < n and float(x).is_integer() else None)
            labels_cover(page, loss(n - 1), loss(0))

    try:
        feed(server.url, "demo.r", page, loss, range(0, 150), batch=10, check=check)
    finally:
        shot(page, f"chart-truth-item1-{where}-after.png")


@pytest.fixture
def notebook_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pb-labels-"))
    notebook(root / "labels.ipynb", [CELL])
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_jupyterlab_labels_follow_a_falling_loss(server: ServerProcess, notebook_dir: Path) -> None:
    lab = JupyterLabProcess(notebook_dir, env=kernel_env(server))
    try:
        lab.start()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(f"{lab.url}/lab/tree/labels.ipynb?token={lab.token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_until(lambda: kernel_idle(lab), timeout=60, interval=0.2, what="the kernel to be idle")
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.keyboard.press("Shift+Enter")
            falling_loss_is_labelled_truly(page, server, "jupyterlab")
    finally:
        lab.stop()


def test_voila_labels_follow_a_falling_loss(server: ServerProcess, notebook_dir: Path) -> None:
    with voila(notebook_dir / "labels.ipynb", dict(os.environ, **kernel_env(server))) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(url + "/")
        falling_loss_is_labelled_truly(page, server, "voila")
