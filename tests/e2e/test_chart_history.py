"""A window longer than the live buffer: the chart loads the older part from the server's
downsampled history, then full resolution where it is zoomed (so long histories draw fast)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.charts import VIEW, hook, publish, wait_drawn
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
N = 200_000
STEP = 0.01  # seconds between messages: 2,000 s of history


def test_whole_channel_downsampled_then_full_resolution_after_a_zoom(page: Any, server_factory: Any) -> None:
    server: ServerProcess = server_factory("--history", str(N))
    t0 = time.time() - N * STEP
    publish(server.url, [{"ch": "long.run", "data": {"v": (i % 1000) / 1000}, "ts": t0 + i * STEP}
                         for i in range(N)], batch=10_000)
    # The live subscription brings only the last 1,000; the window is everything kept.
    page.add_init_script("window.PULSEBOARD_OPTIONS = {backfill: 1000, window: null};")
    page.goto(f"{server.url}/#token={VIEW}&ch=long.run")
    page.locator(".pulseboard-chart").wait_for()
    wait_until(lambda: (hook(page, "seqs('long.run')") or [0])[0] == 1, 60, what="the oldest message drawn")
    wait_drawn(page)
    seqs = hook(page, "seqs('long.run')")
    assert seqs[-1000:] == list(range(N - 999, N + 1))  # the live part, exact
    assert 1000 < len(seqs) < 10_000  # the older part, thinned by the server
    x0, x1 = hook(page, "range()")["x"]
    assert x0 == pytest.approx(t0, abs=1) and x1 == pytest.approx(t0 + (N - 1) * STEP, abs=1)
    # Zoom into a stretch of the older part: it is fetched again, every message of it.
    over = page.locator(".u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.30, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.31, y, steps=4)
    page.mouse.up()
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the zoom")
    wait_drawn(page)
    a, b = hook(page, "range()")["x"]
    want = [i + 1 for i in range(N) if a <= t0 + i * STEP < b]
    assert 1000 < len(want) < 5000

    def inside() -> list[int]:
        return [s for s in hook(page, "seqs('long.run')") if want[0] <= s <= want[-1]]

    wait_until(lambda: inside() == want, 30, what="full resolution in the zoomed range")
