"""notebooks/report.ipynb runs headless into an offline report and a plain HTML export.

A real server (host collector on) and `pulseboard report --execute`, then `jupyter nbconvert
--to html` of the executed notebook; both open in chromium with the network blocked. With
PULSEBOARD_SCREENSHOTS=1 the screenshots go to docs/img (report.png, nbconvert.png).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from report_support import ROOT, drawn_lines, inked_fraction, kernel_env, nbconvert, pulseboard, report_data

pytestmark = [pytest.mark.browser]

NOTEBOOK = ROOT / "notebooks" / "report.ipynb"
IMG = ROOT / "docs" / "img"


def test_worked_example_runs_into_an_offline_report(server_factory: Any, offline_page: Any, tmp_path: Path) -> None:
    server = server_factory("--collect-interval", "0.5")
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    env = kernel_env(server.url)
    # The executed copy too, for the plain export below.
    nbconvert("--to", "notebook", "--execute", NOTEBOOK.name, "--output", "run.ipynb", env=env, cwd=tmp_path)
    pulseboard("report", "run.ipynb", "-o", "report.html", env=env, cwd=tmp_path)
    charts = report_data((tmp_path / "report.html").read_text())
    assert [c["options"]["title"] for c in charts] == ["training run", "this machine"]
    run, host = (c["snapshot"] for c in charts)
    assert run["x"][0] == 0 and run["x"][-1] == 999
    assert {s["ch"] for s in host["series"]} == {f"sys.{socket.gethostname()}"} and len(host["x"]) > 0

    shots = IMG if os.environ.get("PULSEBOARD_SCREENSHOTS") else tmp_path
    page = offline_page
    page.set_viewport_size({"width": 1100, "height": 1500})
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_selector(".pulseboard-chart[data-status=report]")
    assert page.locator(".pulseboard-chart[data-status=report]").count() == 2
    assert page.blocked == [] and page.errors == []
    first = page.locator(".pulseboard-report-chart").first
    first.scroll_into_view_if_needed()
    png = page.screenshot(path=str(shots / "report.png"), clip=clip(page, ".pulseboard-report-chart"))
    assert inked_fraction(page, png) > 0.005

    nbconvert("--to", "html", "run.ipynb", "--output", "plain.html", env=env, cwd=tmp_path)
    page.goto((tmp_path / "plain.html").as_uri())
    page.wait_for_selector("svg.pulseboard-svg")
    lines = drawn_lines(page)
    assert {ln["series"].split(":")[1] for ln in lines} == {"loss", "accuracy", "cpu_percent", "mem_percent"}
    assert all(ln["shown"] and ln["segments"] for ln in lines)
    png = page.screenshot(path=str(shots / "nbconvert.png"), clip=clip(page, "svg.pulseboard-svg"))
    assert inked_fraction(page, png) > 0.005


def clip(page: Any, selector: str) -> dict[str, float]:
    """The box around every element matching `selector` (page coordinates), with a margin."""
    box: dict[str, float] = page.evaluate(
        """(sel) => {
            const rs = [...document.querySelectorAll(sel)].map((e) => e.getBoundingClientRect());
            const x = Math.min(...rs.map((r) => r.left)) - 8, y = Math.min(...rs.map((r) => r.top)) - 8;
            const w = Math.max(...rs.map((r) => r.right)) - x + 8, h = Math.max(...rs.map((r) => r.bottom)) - y + 8;
            return {x: Math.max(0, x + window.scrollX), y: Math.max(0, y + window.scrollY), width: w, height: h};
        }""",
        selector,
    )
    return box
