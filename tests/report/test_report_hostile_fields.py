"""Field names anyone who can publish chooses, in an offline report opened in chromium
(issue: one string must not stop the server): a field named `<!--<script>` must not switch
the HTML parser's script state (that took every chart of the report with it), and a field
named like a spreadsheet formula is text in the report's CSV download."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from report_support import kernel_env, publish, pulseboard, report_data

from harness.notebooks import notebook
from harness.servers import ServerProcess

pytestmark = [pytest.mark.browser]

HOSTILE = "<!--<script>"
FORMULA = "=1+2"


def test_hostile_field_names_leave_every_chart_of_the_report_drawn(
    server: ServerProcess, offline_page: Any, tmp_path: Path
) -> None:
    publish(server.url, [{"ch": "h.a", "data": {"step": i, HOSTILE: i * 0.5, FORMULA: -0.25 * i}} for i in range(20)])
    publish(server.url, [{"ch": "h.b", "data": {"step": i, "v": i % 5}} for i in range(20)])
    env = kernel_env(server.url)
    notebook(tmp_path / "h.ipynb", [
        "from pulseboard import LiveChart\nLiveChart('h.a', x='step', title='hostile')",
        "from pulseboard import LiveChart\nLiveChart('h.b', x='step', title='plain')",
    ])
    pulseboard("report", "h.ipynb", "--execute", "-o", "report.html", env=env, cwd=tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert HOSTILE not in html.split('id="pulseboard-report-data">', 1)[1].split("</script>", 1)[0]
    assert [c["snapshot"]["series"][0]["ch"] for c in report_data(html)] == ["h.a", "h.b"]

    page = offline_page
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_function("document.querySelectorAll('.pulseboard-chart[data-status=report]').length === 2")
    points = page.evaluate("[...document.querySelectorAll('.pulseboard-chart')].map((el) => el.__pulseboard.points())")
    assert points == [20, 20]
    names = page.evaluate("document.querySelector('.pulseboard-chart').__pulseboard.names()")
    assert HOSTILE in names  # shown as text, in the legend
    page.screenshot(path="/work/wt/shots/trust-edges-report-hostile-fields.png", full_page=True)

    with page.expect_download() as dl:
        page.locator("[data-action=csv]").first.click()  # the chart toolbar's CSV: one per chart
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    header = rows[0]
    assert "'" + FORMULA in header and FORMULA not in header and HOSTILE in header
    col = header.index("'" + FORMULA)
    assert [float(r[col]) for r in rows[1:]] == [-0.25 * i for i in range(20)]  # numbers stay numbers
    assert page.errors == []
