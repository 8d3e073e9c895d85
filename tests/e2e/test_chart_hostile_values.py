"""Values and field names anyone who can publish chooses, in chromium: a 400-digit integer
(JSON.parse makes it Infinity) is drawn as missing and the rest of the chart draws; a field
named like a spreadsheet formula is neutralised in the CSV download while negative numbers
stay numbers (issue: one string must not stop the server)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn, wait_points
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
FORMULA = '=HYPERLINK("http://evil.example","click")'
HUGE = 10**400


def test_huge_values_are_missing_and_formula_fields_are_text_in_the_csv(
    page: Any, server: ServerProcess, page_server: PageServer, tmp_path: Path
) -> None:
    vs: list[Any] = [1.0, 2.0, HUGE, 3.0, -HUGE, 2.5, 2**53 + 1, 1.5]
    msgs = [{"ch": "h.run", "data": {"step": i, "v": v, FORMULA: -0.5 * i, "-neg": -i}} for i, v in enumerate(vs)]
    publish(server.url, msgs)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_widget(page, page_server.url, widget_state(channels=["h.run"], x="step", url=server.url, token=VIEW,
                                                    window=None, fields=["v", FORMULA, "-neg"]))
    wait_points(page, len(vs))
    wait_drawn(page)
    wait_until(lambda: hook(page, "status") == "live", what="the chart live")
    drawn = hook(page, "drawn('h.run:v')")
    finite = [y for y in drawn["y"] if y is not None and math.isfinite(y)]
    assert finite == [1.0, 2.0, 3.0, 2.5, float(2**53), 1.5]  # the huge ones are holes, not a wrecked axis
    ranges = hook(page, "range()")
    assert all(math.isfinite(a) and math.isfinite(b) for a, b in ranges["y"].values()), ranges
    assert not errors
    page.locator(".pulseboard-chart").screenshot(path="/work/wt/shots/trust-edges-huge-values-chart.png")

    with page.expect_download() as info:
        page.click("[data-action=csv]")
    path = tmp_path / "chart.csv"
    info.value.save_as(path)
    text = path.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["step", "v", "'" + FORMULA, "'-neg"]  # text: shown, never run
    assert [float(r[2]) for r in rows[1:]] == [-0.5 * i for i in range(len(vs))]
    assert rows[2][3] == "-1"  # a negative number is a number, not neutralised
    assert [r[1] for r in rows[1:]] == ["1", "2", "", "3", "", "2.5", str(2**53), "1.5"]
