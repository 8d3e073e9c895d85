"""The runs table in a real Voila page (chromium): rows with statuses, the config keys that
differ, metrics' last/min/max; clicking a row makes the linked LiveChart draw that run only;
the chart colours runs by a config value. Screenshots go to /work/wt/shots when it exists."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import chromium
from harness.charts import hook, wait_drawn
from harness.jupyter import voila
from harness.notebooks import notebook
from harness.painted import check_labels, labels_cover
from harness.servers import ServerProcess, wait_until
from report.report_support import kernel_env
from runs.runs_support import LRS, make_runs

pytestmark = [pytest.mark.jupyter, pytest.mark.browser]
SHOTS = Path("/work/wt/shots")


def test_runs_table_selects_runs_for_a_linked_chart(server: ServerProcess, tmp_path: Path) -> None:
    make_runs(server)
    notebook(tmp_path / "app.ipynb", [
        "from pulseboard import Runs, LiveChart\n"
        "runs = Runs('exp', metrics=['loss'])\n"
        "chart = LiveChart('exp.*', fields=['loss'], x='step', window=None, color_by='lr', title='loss by lr')\n"
        "runs.link(chart)\n"
        "display(runs, chart)",
    ])
    with voila(tmp_path / "app.ipynb", kernel_env(server.url)) as page_url, chromium() as browser:
        page: Any = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(page_url)
            page.wait_for_selector(".pulseboard-runs tr[data-run]", timeout=60_000)
            wait_until(lambda: page.locator(".pulseboard-runs td[data-col='metric:loss:last']").all_inner_texts()
                       and all(page.locator(".pulseboard-runs td[data-col='metric:loss:last']").all_inner_texts()),
                       timeout=30, what="every run's last loss in the table")
            statuses = {n: page.get_attribute(f".pulseboard-runs tr[data-run={n}]", "data-status") for n in LRS}
            assert statuses == {"a": "finished", "b": "finished", "c": "running"}
            headers = page.locator(".pulseboard-runs th").all_inner_texts()
            assert "lr" in headers and "batch" not in headers  # only the config keys that differ
            assert {"loss last", "loss min", "loss max"} <= set(headers)
            row_b = page.locator(".pulseboard-runs tr[data-run=b] td").all_inner_texts()
            assert row_b[headers.index("lr")] == "0.01"
            assert row_b[headers.index("loss max")] == "2.1"
            chart = ".pulseboard-chart"
            wait_until(lambda: len(page.evaluate(f"document.querySelector('{chart}').__pulseboard.series()")) == 3,
                       timeout=30, what="the chart to draw all three runs")
            wait_until(lambda: page.get_attribute(chart, "data-color-by") == "lr", timeout=30,
                       what="the chart to colour runs by lr")
            colors = page.evaluate(f"document.querySelector('{chart}').__pulseboard.colors()")
            assert len(set(colors)) == 3
            if SHOTS.is_dir():
                page.screenshot(path=str(SHOTS / "runs-table-and-chart-by-lr.png"), full_page=True)
            # Two clicks in a row: the chart restarts twice and must not bring back the runs of the
            # snapshot it held before (taken of every run).
            page.click(".pulseboard-runs tr[data-run=b]")
            page.click(".pulseboard-runs tr[data-run=c]")
            wait_until(lambda: sorted(page.evaluate(f"document.querySelector('{chart}').__pulseboard.series()"))
                       == ["exp.b:loss", "exp.c:loss"], timeout=30, what="the chart to draw runs b and c only")
            assert page.get_attribute(".pulseboard-runs tr[data-run=b]", "aria-selected") == "true"
            page.click(".pulseboard-runs tr[data-run=c]")
            wait_until(lambda: page.evaluate(f"document.querySelector('{chart}').__pulseboard.series()")
                       == ["exp.b:loss"], timeout=30, what="the chart to draw run b only")
            # The row click restarted the chart and its run colour came after the data: the painted
            # labels are those of run b's data (once they read 0 to 1 until log y was toggled).
            wait_until(lambda: page.get_attribute(chart, "data-color-by") == "lr" and hook(page, "points()") == 40,
                       timeout=30, what="run b drawn in its colour")
            wait_drawn(page)
            b = {s: round(2 * math.exp(-s * LRS["b"] * 3) + 0.1, 4) for s in range(40)}
            labels_cover(page, min(b.values()), max(b.values()))
            check_labels(page, hook(page, "colors()")[0], lambda x: b.get(int(x)) if float(x).is_integer() else None)
            page.click(".pulseboard-runs tr[data-run=c]")
            wait_until(lambda: sorted(page.evaluate(f"document.querySelector('{chart}').__pulseboard.series()"))
                       == ["exp.b:loss", "exp.c:loss"], timeout=30, what="the chart to draw runs b and c")
            if SHOTS.is_dir():
                page.screenshot(path=str(SHOTS / "runs-table-selected-b-c.png"), full_page=True)
            page.select_option(".pulseboard-runs select[data-filter=status]", "running")
            wait_until(lambda: page.locator(".pulseboard-runs tr[data-run]:visible").count() == 1, timeout=10,
                       what="the status filter to leave the running run")
            page.click(".pulseboard-runs th[data-col='config:lr']")
            page.select_option(".pulseboard-runs select[data-filter=status]", "")
            wait_until(lambda: page.locator(".pulseboard-runs tr[data-run]").evaluate_all(
                "rows => rows.map(r => r.dataset.run)") == ["c", "b", "a"], timeout=10, what="rows sorted by lr")
            page.click(".pulseboard-runs [data-action=clear-selection]")
            wait_until(lambda: len(page.evaluate(f"document.querySelector('{chart}').__pulseboard.series()")) == 3,
                       timeout=30, what="the chart to draw every run again")
            static = page.locator("[data-pulseboard-static]")
            assert static.count() == 2 and not static.first.is_visible()  # the static copies stay hidden
            assert errors == []
        finally:
            browser.close()
