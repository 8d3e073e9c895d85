"""Zoom, reset, log scale, legend, keyboard, CSV/PNG downloads and thresholds, in chromium,
read from what the chart drew (its debug hook), on an x="step" chart."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn, wait_points
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
N = 500


def open_chart(page: Any, server: ServerProcess, page_server: PageServer, **over: Any) -> list[dict[str, Any]]:
    t0 = time.time() - N
    msgs = [{"ch": "train.i", "data": {"step": i, "loss": 10 * math.exp(-i / 60) + 0.01, "acc": i / N},
             "ts": t0 + i} for i in range(N)]
    publish(server.url, msgs)
    state = widget_state(channels=["train.i"], x="step", url=server.url, token=VIEW, max_points=200_000,
                         window=None, **over)
    open_widget(page, page_server.url, state)
    wait_points(page, N)
    wait_drawn(page)
    return msgs


def drawn_range(page: Any) -> dict[str, Any]:
    wait_drawn(page)
    return hook(page, "range()")  # type: ignore[no-any-return]


def test_zoom_reset_and_log_scale_change_the_drawn_range(
    page: Any, server: ServerProcess, page_server: PageServer
) -> None:
    open_chart(page, server, page_server, fields=["loss"])
    full = drawn_range(page)
    assert full["x"] == [0, N - 1] and not full["zoomed"]
    over = page.locator(".u-over").bounding_box()
    # Drag across the middle fifth: the x range becomes that part.
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.5, y, steps=5)
    page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=5)
    page.mouse.up()
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the zoom")
    zoomed = drawn_range(page)
    assert zoomed["x"][0] == pytest.approx(0.4 * (N - 1), abs=N * 0.02)
    assert zoomed["x"][1] == pytest.approx(0.6 * (N - 1), abs=N * 0.02)
    # The y range follows what is visible: the loss there is far below its start.
    assert zoomed["y"]["y"][1] < full["y"]["y"][1] / 3
    # Double-click resets.
    page.mouse.dblclick(over["x"] + over["width"] / 2, y)
    wait_until(lambda: not hook(page, "range()")["zoomed"], what="the reset")
    assert drawn_range(page)["x"] == [0, N - 1]
    # Zoom again, then the toolbar button resets.
    page.mouse.move(over["x"] + over["width"] * 0.1, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.3, y, steps=5)
    page.mouse.up()
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the second zoom")
    page.click("[data-action=reset-zoom]")
    wait_until(lambda: not hook(page, "range()")["zoomed"], what="the toolbar reset")
    # Log y: the range spans decades and the axis is logarithmic.
    page.click("[data-action=log-y]")
    wait_until(lambda: hook(page, "range()")["log"], what="log scale")
    lo, hi = drawn_range(page)["y"]["y"]
    assert 0 < lo < 0.02 and hi > 9 and page.get_attribute("[data-action=log-y]", "aria-pressed") == "true"
    page.click("[data-action=log-y]")
    wait_until(lambda: not hook(page, "range()")["log"], what="linear again")
    assert drawn_range(page)["y"]["y"][0] < 0  # linear padding goes below zero


def test_legend_toggles_and_keyboard(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    open_chart(page, server, page_server, fields=["loss", "acc"])
    assert page.get_attribute(".pulseboard-chart", "data-series") == "2"
    assert hook(page, "drawn('acc')")["x"]
    page.locator(".u-legend .u-series").nth(2).click()  # acc
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "1", what="acc hidden")
    # Keyboard: the legend entry and the toolbar buttons are reachable and work with Enter.
    entry = page.locator(".u-legend .u-series").nth(2)
    entry.focus()
    page.keyboard.press("Enter")
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "2", what="acc shown again")
    page.locator("[data-action=reset-zoom]").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.action") == "log-y"
    page.keyboard.press("Enter")
    wait_until(lambda: hook(page, "range()")["log"], what="log scale from the keyboard")
    # The plot takes + (zoom in around the middle), arrows (pan) and 0 (reset).
    drawn_range(page)  # the log axis is drawn (its frame was rebuilt)
    page.locator(".u-over").focus()
    page.keyboard.press("+")
    wait_until(lambda: hook(page, "range()")["zoomed"], what="keyboard zoom")
    a, b = drawn_range(page)["x"]
    assert (a, b) == (pytest.approx((N - 1) / 4), pytest.approx(3 * (N - 1) / 4))
    page.keyboard.press("ArrowRight")
    wait_until(lambda: drawn_range(page)["x"][0] > a, what="keyboard pan")
    page.keyboard.press("0")
    wait_until(lambda: not hook(page, "range()")["zoomed"], what="keyboard reset")
    # Two presses before the next frame is drawn are two steps (each from the zoom as set, not
    # from the range as last drawn): a quarter of the steps, around the middle.
    drawn_range(page)
    page.locator(".u-over").evaluate(
        "(el) => { for (let i = 0; i < 2; i++) el.dispatchEvent(new KeyboardEvent('keydown', {key: '+'})); }")
    wait_until(lambda: hook(page, "range()")["zoomed"], what="two quick zoom steps")
    a, b = drawn_range(page)["x"]
    assert (a, b) == (pytest.approx(3 * (N - 1) / 8), pytest.approx(5 * (N - 1) / 8))
    page.keyboard.press("0")
    wait_until(lambda: not hook(page, "range()")["zoomed"], what="keyboard reset")
    # The status line stays.
    assert "live" in page.locator(".pulseboard-status").inner_text()


def test_csv_holds_every_point_and_png_downloads(
    page: Any, server: ServerProcess, page_server: PageServer, tmp_path: Path
) -> None:
    msgs = open_chart(page, server, page_server, fields=["loss", "acc"])
    with page.expect_download() as info:
        page.click("[data-action=csv]")
    path = tmp_path / "chart.csv"
    info.value.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["step", "loss", "acc"]
    assert len(rows) == N + 1
    for row, m in zip(rows[1:], msgs, strict=True):
        assert float(row[0]) == m["data"]["step"]
        assert float(row[1]) == m["data"]["loss"]  # full precision, not a downsampled copy
        assert float(row[2]) == m["data"]["acc"]
    with page.expect_download() as png:
        page.click("[data-action=png]")
    png.value.save_as(tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert info.value.suggested_filename.endswith(".csv")


def test_threshold_line_and_border(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    state = widget_state(channels=["job.t"], fields=["loss"], url=server.url, token=VIEW,
                         thresholds={"loss": 0.5}, max_points=200_000)
    open_widget(page, page_server.url, state)
    root = page.locator(".pulseboard-chart")

    def send(v: float) -> None:
        publish(server.url, [{"ch": "job.t", "data": {"loss": v}}])

    send(0.2)
    wait_points(page, 1)
    wait_drawn(page)
    assert "pulseboard-breach" not in (root.get_attribute("class") or "")
    lo, hi = hook(page, "range()")["y"]["y"]
    assert lo < 0.5 < hi  # the threshold line is within the drawn range
    send(0.9)
    wait_until(lambda: root.get_attribute("data-breach") == "loss", what="the border marked")
    assert "pulseboard-breach" in (root.get_attribute("class") or "")
    send(0.1)
    wait_until(lambda: root.get_attribute("data-breach") is None, what="the mark cleared")
