"""The dashboard's runs panel (`#token=...&runs=PROJECT&color_by=lr`) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.charts import publish
from harness.servers import ServerProcess, wait_until
from harness.tokens import token
from runs.runs_support import make_runs

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


def test_a_row_out_of_view_shows_its_latest_figures_when_scrolled_to(page: Any, server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    for i in range(60):
        httpx.post(server.url + "/runs", headers=headers,
                   json={"project": "many", "name": f"r{i:02d}", "op": "start", "config": {"i": i}})
    publish(server.url, [{"ch": "many.r00", "data": {"loss": 5}}])
    page.goto(f"{server.url}/#token={token(sub='viewer', read=['*'], publish=[])}&runs=many")
    cell = ".pb-runs-panel tr[data-run=r00] td[data-col='metric:loss:last']"
    page.wait_for_selector(cell, timeout=30_000)
    wait_until(lambda: page.inner_text(cell) == "5", 30, what="r00's first loss")
    # Newest first: r00 is the last row, below the scrolled view; its loss changes meanwhile.
    assert not page.evaluate(
        "(() => { const r = document.querySelector('.pb-runs-panel tr[data-run=r00]').getBoundingClientRect();"
        " const s = document.querySelector('.pb-runs-panel .pulseboard-runs-scroll').getBoundingClientRect();"
        " return r.top < s.bottom + 200; })()")
    publish(server.url, [{"ch": "many.r00", "data": {"loss": 3}}, {"ch": "many.r00", "data": {"loss": 4}}])
    page.locator(".pb-runs-panel tr[data-run=r00]").scroll_into_view_if_needed()
    wait_until(lambda: page.inner_text(cell) == "4", 30, what="r00's latest loss once in view")
    row = page.locator(".pb-runs-panel tr[data-run=r00] td").all_inner_texts()
    heads = page.locator(".pb-runs-panel .pulseboard-runs th").all_inner_texts()
    assert row[heads.index("loss min")] == "3" and row[heads.index("loss max")] == "5"
