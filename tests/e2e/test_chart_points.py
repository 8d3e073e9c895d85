"""Drawing bounded by pixels: 200,000 points held, a few drawn per pixel column, and a
single outlier among them still drawn."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn, wait_points
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
N = 200_000
SPIKE = 123_457


def test_a_single_outlier_among_200000_points_is_drawn(
    page: Any, server_factory: Any, page_server: PageServer
) -> None:
    server: ServerProcess = server_factory("--history", str(N))
    t0 = time.time() - N
    msgs = [{"ch": "big.one", "data": {"step": i, "v": 100.0 if i == SPIKE else math.sin(i / 500)}, "ts": t0 + i}
            for i in range(N)]
    publish(server.url, msgs, batch=5_000)  # as pulseboard.log batches: at most 5,000 a body
    state = widget_state(channels=["big.one"], fields=["v"], x="step", url=server.url, token=VIEW,
                         max_points=N, window=None)
    open_widget(page, page_server.url, state)
    wait_points(page, N, timeout=120)
    wait_drawn(page)
    root = page.locator(".pulseboard-chart")
    assert root.get_attribute("data-points") == str(N)
    drawn = hook(page, "drawn('v')")
    width = page.locator(".u-over").bounding_box()["width"]
    # At most two points per pixel column (a bucket is at least one column wide and keeps
    # its min and max), plus one bucket beyond each edge.
    assert len(drawn["x"]) <= 2 * (width + 4)
    assert 100.0 in drawn["y"] and SPIKE in drawn["x"]
    assert hook(page, "range()")["y"]["y"][1] >= 100.0
    # Zoomed into a small region (two drags), it draws every point there: full resolution.
    over = page.locator(".u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    for half in (0.02 * N, 200):
        x0, x1 = hook(page, "range()")["x"]
        a, b = ((SPIKE - half - x0) / (x1 - x0), (SPIKE + half - x0) / (x1 - x0))
        page.mouse.move(over["x"] + over["width"] * a, y)
        page.mouse.down()
        page.mouse.move(over["x"] + over["width"] * b, y, steps=4)
        page.mouse.up()
        wait_until(lambda: hook(page, "range()")["x"][0] > x0, what="the zoom")  # noqa: B023
        wait_drawn(page)
    x0, x1 = hook(page, "range()")["x"]
    assert x1 - x0 < 500 and x0 < SPIKE < x1
    drawn = hook(page, "drawn('v')")
    inside = [x for x in drawn["x"] if x0 <= x <= x1]
    assert inside == list(range(math.ceil(x0), math.floor(x1) + 1))
