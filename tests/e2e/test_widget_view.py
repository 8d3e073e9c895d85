"""The chart's view and the widget's traits, both ways, in chromium: what a person sets in the
browser (log y, smoothing, drag-zoom, legend) is written to the model (and saved), and what
Python sets changes the chart in place. The page's stand-in model plays the kernel's side."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, drag_zoom, hook, publish, wait_drawn, wait_points
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser
N = 200


def state(page: Any, name: str) -> Any:
    return page.evaluate("(k) => model.state[k]", name)


def test_the_view_goes_to_the_traits_and_comes_back_from_them(
    page: Any, server: ServerProcess, page_server: PageServer,
) -> None:
    t0 = time.time() - N
    publish(server.url, [{"ch": "view.a", "data": {"step": i, "loss": 1 + i, "lr": 0.1}, "ts": t0 + i}
                         for i in range(N)])
    open_widget(page, page_server.url, widget_state(channels=["view.a"], x="step", url=server.url, token=VIEW,
                                                    window=None))
    wait_points(page, N)
    wait_drawn(page)
    saves = page.evaluate("model.saves")
    assert state(page, "log_y") is None or state(page, "log_y") is False  # nothing written before a change

    # Browser -> traits. (The legend first: with smoothing on a legend click misses, a toolbar bug
    # of its own.)
    page.locator(".u-legend .u-series").nth(2).click()  # lr
    wait_until(lambda: state(page, "hidden") == ["lr"], what="hidden written")
    page.locator("[data-action=log-y]").click()
    wait_until(lambda: state(page, "log_y") is True, what="log_y written")
    page.locator("[data-action=smooth]").click()
    wait_until(lambda: (state(page, "smoothing") or 0) > 0, what="smoothing written")
    drag_zoom(page, 0.2, 0.6)
    wait_until(lambda: state(page, "zoom") is not None, what="zoom written")
    z0, z1 = state(page, "zoom")
    assert 0 < z0 < z1 < N - 1
    assert page.evaluate("model.saves") >= saves + 4  # each change saved

    # Python -> chart, in place (no new chart: the points stay, the view changes).
    page.evaluate("model.set('log_y', false)")
    wait_until(lambda: hook(page, "range()")["log"] is False, what="log y off from Python")
    page.evaluate("model.set('zoom', null)")
    wait_until(lambda: hook(page, "range()")["zoomed"] is False, what="zoom reset from Python")
    page.evaluate("model.set('smoothing', 0)")
    wait_until(lambda: page.locator("[data-action=smooth]").inner_text() == "smooth", what="smoothing off")
    page.evaluate("model.set('hidden', [])")
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-series") == "2", what="lr shown again")
    assert state(page, "log_y") is False and state(page, "hidden") == []
