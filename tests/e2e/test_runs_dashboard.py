"""The dashboard's runs panel (`#token=...&runs=PROJECT&color_by=lr`) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runs.runs_support import make_runs
from support import ServerProcess, token, wait_until

pytestmark = pytest.mark.browser
SHOTS = Path("/work/wt/shots")


def series(page: Any) -> list[str]:
    out: list[str] = page.evaluate(
        "document.querySelector('.pb-runs-panel .pulseboard-chart').__pulseboard.series()")
    return sorted(out)


def test_dashboard_runs_panel_selects_runs_for_its_chart(page: Any, server: ServerProcess) -> None:
    make_runs(server)
    page.goto(f"{server.url}/#token={token(sub='viewer', read=['*'], publish=[])}&runs=exp&color_by=lr&x=step")
    page.wait_for_selector(".pb-runs-panel .pulseboard-runs tr[data-run]", timeout=30_000)
    wait_until(lambda: page.locator(".pb-runs-panel tr[data-run]").count() == 3, 20, what="three runs")
    assert page.get_attribute(".pb-runs-panel tr[data-run=c]", "data-status") == "running"
    wait_until(lambda: series(page) == ["exp.a:loss", "exp.b:loss", "exp.c:loss"], 30, what="every run drawn")
    wait_until(lambda: page.get_attribute(".pb-runs-panel .pulseboard-chart", "data-color-by") == "lr", 30,
               what="runs coloured by lr")
    if SHOTS.is_dir():
        page.screenshot(path=str(SHOTS / "dashboard-runs-panel.png"), full_page=True)
    page.click(".pb-runs-panel tr[data-run=a]")
    wait_until(lambda: series(page) == ["exp.a:loss"], 30, what="run a only")
    assert "&runs=exp" in page.evaluate("location.hash")  # a reload keeps the panel
