"""Exported notebooks and reports show their charts, with their data, with no network.

Real processes throughout: `pulseboard serve` holds known data, a notebook displaying a
LiveChart is executed headless (`jupyter nbconvert --execute`, `pulseboard report
--execute`), exported, and opened in chromium with every network request blocked.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_support import (
    KNOWN_CH,
    drawn_lines,
    inked_fraction,
    kernel_env,
    known_values,
    nbconvert,
    publish,
    pulseboard,
    report_data,
)

from harness.notebooks import notebook
from harness.servers import ServerProcess, wait_until

pytestmark = [pytest.mark.browser]

CHART_CELL = (f"from pulseboard import LiveChart\n"
              f"chart = LiveChart({KNOWN_CH!r}, fields=['v'], x='step', title='known')\nchart")


@pytest.fixture
def executed(server: ServerProcess, tmp_path: Path) -> tuple[Path, dict[str, str], list[tuple[int, float]]]:
    """A notebook showing a chart of 60 known values, executed headless by nbconvert."""
    known = known_values()
    publish(server.url, [{"ch": KNOWN_CH, "data": {"step": s, "v": v}} for s, v in known])
    env = kernel_env(server.url)
    notebook(tmp_path / "known.ipynb", [CHART_CELL])
    nbconvert("--to", "notebook", "--execute", "known.ipynb", "--output", "known.run.ipynb", env=env, cwd=tmp_path)
    return tmp_path / "known.run.ipynb", env, known


def assert_no_token(text: str, env: dict[str, str]) -> None:
    """Nothing in a report can read or publish: no token of any kind, no ticket, no widget state."""
    assert env["PULSEBOARD_TOKEN"] not in text
    assert not re.search(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", text)
    assert "widget-state+json" not in text and "ticket" not in text


def test_plain_nbconvert_html_shows_the_svg_offline(executed: Any, offline_page: Any, tmp_path: Path) -> None:
    nb, env, known = executed
    nbconvert("--to", "html", nb.name, "--output", "plain.html", env=env, cwd=tmp_path)
    html = (tmp_path / "plain.html").read_text()
    page = offline_page
    page.goto((tmp_path / "plain.html").as_uri())
    page.wait_for_selector("svg.pulseboard-svg")

    lines = drawn_lines(page)
    assert [ln["series"] for ln in lines] == [f"{KNOWN_CH}:v"]
    line = lines[0]
    assert line["shown"], "the SVG takes no space on the page"
    [points] = line["segments"]  # no gaps in this data: one unbroken line
    assert len(points) == len(known)
    for (x, y), (step, v) in zip(points, known, strict=True):
        assert abs(x - step) <= line["x_tol"], (x, step)
        assert abs(y - v) <= line["y_tol"], (y, v, step)

    png = page.locator("svg.pulseboard-svg").first.screenshot()
    assert inked_fraction(page, png) > 0.005, "the chart's screenshot is blank"
    # nbconvert kept the live widget's output too (it loads its renderer from a CDN: blocked here).
    assert any("html-manager" in u for u in page.blocked)
    assert "pulseboard-svg" in html
    # Under the chart: no `<pulseboard.widget.LiveChart object at 0x...>` line, at most its repr.
    text = page.inner_text("body")
    assert "object at 0x" not in text and "object at 0x" not in html
    # What webpdf does with this HTML: print media, then a PDF. The SVG stays on the page.
    page.emulate_media(media="print")
    assert page.locator("svg.pulseboard-svg").first.is_visible()
    assert page.pdf()[:5] == b"%PDF-"


def test_a_notebook_saved_without_widget_state_exports_no_object_repr(
    executed: Any, offline_page: Any, tmp_path: Path,
) -> None:
    # JupyterLab saves no widget state by default: exports then fall back to the widget output's
    # text/plain, which read `<pulseboard.widget.LiveChart object at 0x...>` under the chart.
    nb, env, _known = executed
    data = json.loads(nb.read_text())
    data["metadata"].pop("widgets", None)
    (tmp_path / "nostate.ipynb").write_text(json.dumps(data))
    nbconvert("--to", "html", "nostate.ipynb", "--output", "nostate.html", env=env, cwd=tmp_path)
    page = offline_page
    page.goto((tmp_path / "nostate.html").as_uri())
    page.wait_for_selector("svg.pulseboard-svg")
    text = page.inner_text("body")
    assert "object at 0x" not in text
    assert f"LiveChart({KNOWN_CH!r}, fields=['v'], x='step', title='known')" in text
    # The report draws the chart once, with no text line for the widget output.
    pulseboard("report", "nostate.ipynb", "-o", "nostate-report.html", env=env, cwd=tmp_path)
    page.goto((tmp_path / "nostate-report.html").as_uri())
    page.wait_for_selector(".pulseboard-chart[data-status=report]")
    assert page.locator(".pulseboard-chart").count() == 1
    text = page.inner_text("body")
    assert "object at 0x" not in text and "LiveChart(" not in text.replace("chart = LiveChart(", "")


def test_report_is_interactive_offline(executed: Any, offline_page: Any, tmp_path: Path) -> None:
    nb, env, known = executed
    pulseboard("report", nb.name, "-o", "report.html", env=env, cwd=tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert_no_token(html, env)
    [chart] = report_data(html)
    assert chart["snapshot"]["x"] == [float(s) for s, _ in known]
    # `jupyter nbconvert --to pulseboard` is the same exporter.
    nbconvert("--to", "pulseboard", nb.name, "--output", "via-nbconvert", env=env, cwd=tmp_path)
    assert report_data((tmp_path / "via-nbconvert.html").read_text()) == [chart]

    page = offline_page
    page.goto((tmp_path / "report.html").as_uri())
    page.wait_for_selector("[data-pulseboard-chart] .pulseboard-chart[data-status=report]")
    assert page.blocked == [], "the report asked for something from the network"
    hook_points = page.evaluate("document.querySelector('.pulseboard-chart').__pulseboard.points()")
    assert hook_points == len(known)
    png = page.locator(".pulseboard-chart").first.screenshot()
    assert inked_fraction(page, png) > 0.005

    # Hover: the legend shows the value under the cursor.
    step, value = known[30]
    over = page.locator(".pulseboard-chart .u-over").first.bounding_box()
    legend_x = page.locator(".pulseboard-chart .u-legend .u-series").first.locator(".u-value")
    legend_v = page.locator(".pulseboard-chart .u-legend .u-series").nth(1).locator(".u-value")
    guess = over["x"] + over["width"] * step / known[-1][0]

    def hovered_at_step() -> bool:
        for dx in range(-8, 9):
            page.mouse.move(guess + dx, over["y"] + over["height"] / 2)
            if legend_x.inner_text().strip() == str(step):
                return True
        return False

    wait_until(hovered_at_step, timeout=10, what=f"the cursor on step {step}")
    assert legend_v.inner_text().strip() == f"{value:g}"

    # One CSV button per chart (the chart's own), and its download holds every point.
    assert page.locator("[data-pulseboard-chart] button[data-action*=csv]").count() == 1
    assert page.locator("[data-pulseboard-chart] button", has_text="CSV").count() <= 1
    with page.expect_download() as dl:
        page.click("[data-pulseboard-chart] [data-action=csv]")
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    assert rows[0] == ["step", "v"]
    assert "object at 0x" not in page.inner_text("body")
    assert [(int(float(r[0])), float(r[1])) for r in rows[1:]] == known
    assert page.errors == []


def test_long_run_in_a_later_cell_is_whole_in_the_headless_report(
    server_factory: Any, offline_page: Any, tmp_path: Path,
) -> None:
    server = server_factory("--history", "25000")
    steps = 20_000
    loop = (
        "from pulseboard import Publisher\n"
        "pub = Publisher()\n"
        "batch = []\n"
        f"for step in range({steps}):\n"
        "    batch.append(('train.long', {'step': step, 'loss': 1 / (1 + step / 100), 'acc': step / 20000}, None))\n"
        "    if len(batch) == 1000:\n"
        "        pub.publish_many(batch)\n"
        "        batch = []\n"
        "pub.publish_many(batch) if batch else None\n"
        "print('done')"
    )
    chart = "from pulseboard import LiveChart\nchart = LiveChart('train.long', fields=['loss', 'acc'], x='step')\nchart"
    env = kernel_env(server.url)
    notebook(tmp_path / "train.ipynb", [chart, loop])
    pulseboard("report", "train.ipynb", "--execute", "-o", "train.html", env=env, cwd=tmp_path)
    html = (tmp_path / "train.html").read_text()
    assert_no_token(html, env)
    [spec] = report_data(html)
    snap = spec["snapshot"]
    assert snap["x"][0] == 0 and snap["x"][-1] == steps - 1, "the report misses the start or the end of the run"
    loss = snap["y"][[s["field"] for s in snap["series"]].index("loss")]
    assert loss[0] == 1.0 and loss[-1] == 1 / (1 + (steps - 1) / 100)
    assert len(snap["x"]) <= 2000 and snap["downsampled"]

    page = offline_page
    page.goto((tmp_path / "train.html").as_uri())
    page.wait_for_selector(".pulseboard-chart[data-status=report]")
    assert page.evaluate("document.querySelector('.pulseboard-chart').__pulseboard.points()") == len(snap["x"])
    assert page.blocked == []


def test_a_chart_that_drew_nothing_says_why_in_the_report(server: ServerProcess, offline_page: Any,
                                                           tmp_path: Path) -> None:
    # What a person typed: a channel name one letter off, and a field name one letter off.
    known = known_values(20)
    publish(server.url, [{"ch": KNOWN_CH, "data": {"step": s, "v": v}} for s, v in known])
    env = kernel_env(server.url)
    notebook(tmp_path / "typos.ipynb", [
        "from pulseboard import LiveChart\nLiveChart('test.knwn', fields=['v'], x='step', title='channel typo')",
        f"LiveChart({KNOWN_CH!r}, fields=['w', 'v'], x='step', title='field typo')",
    ])
    pulseboard("report", "typos.ipynb", "--execute", "-o", "typos.html", env=env, cwd=tmp_path)
    page = offline_page
    page.goto((tmp_path / "typos.html").as_uri())
    page.wait_for_selector("[data-pulseboard-chart] .pulseboard-chart[data-status=report]")
    wait_until(lambda: page.locator(".pulseboard-chart").count() == 2, what="both charts")
    said = [m.inner_text() for m in page.locator(".pulseboard-chart .pulseboard-message").all()]
    assert said == ["no numbers on test.knwn when this snapshot was taken",
                    "no numbers in field w; fields drawn: v"]
    assert page.evaluate("document.querySelectorAll('.pulseboard-chart')[1].__pulseboard.points()") == len(known)
    assert page.errors == []
