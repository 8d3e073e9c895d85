"""Run comparison: a chart of a channel pattern picks up a new run while it is open."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, hook, publish, wait_drawn
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser


def run(ch: str, n: int, t0: float, start: int = 0) -> list[dict[str, Any]]:
    steps = range(start, start + n)
    return [{"ch": ch, "data": {"step": i, "loss": 1 / (i + 1), "acc": i / 100}, "ts": t0 + i} for i in steps]


def test_pattern_chart_gains_a_third_run_while_open(
    page: Any, server: ServerProcess, page_server: PageServer
) -> None:
    t0 = time.time() - 100
    publish(server.url, run("train.a", 20, t0) + run("train.b", 20, t0) + run("eval.a", 20, t0))
    state = widget_state(channels=["train.*"], fields=["loss"], x="step", url=server.url, token=VIEW,
                         max_points=200_000)
    open_widget(page, page_server.url, state)
    wait_until(lambda: hook(page, "points()") == 40, 20, what="both runs' points")
    wait_drawn(page)
    names = hook(page, "names()")
    assert names == ["train.a · loss", "train.b · loss"]  # eval.a does not match; acc not picked
    colors = hook(page, "colors()")
    assert page.get_attribute(".pulseboard-chart", "data-series") == "2"
    # A third run starts while the chart is open: it joins without re-running anything.
    publish(server.url, run("train.c", 15, t0))
    wait_until(lambda: hook(page, "points()") == 55, 30, what="the new run's points")
    wait_drawn(page)
    assert hook(page, "names()") == [*names, "train.c · loss"]
    assert hook(page, "colors()")[:2] == colors  # colours stay with their series
    assert len(set(hook(page, "colors()"))) == 3
    assert page.get_attribute(".pulseboard-chart", "data-series") == "3"
    assert page.get_attribute(".pulseboard-chart", "data-points") == "55"
    # It keeps following the new run live.
    publish(server.url, run("train.c", 3, t0, start=15))
    wait_until(lambda: hook(page, "points()") == 58, what="live points of the new run")


def test_dashboard_pattern_from_the_fragment_and_the_box(page: Any, server: ServerProcess) -> None:
    t0 = time.time() - 100
    publish(server.url, run("train.a", 10, t0) + run("train.b", 10, t0) + run("eval.x", 10, t0))
    page.goto(f"{server.url}/#token={VIEW}&ch=train.*")
    slot = page.locator("section.pb-slot[data-channel='train.*'] .pulseboard-chart")
    slot.wait_for()
    wait_until(lambda: len(hook(page, "series()") or []) == 6, what="train.a and train.b, all fields")
    assert sorted({s.split(":")[0] for s in hook(page, "series()")}) == ["train.a", "train.b"]
    # The pattern box adds a chart per pattern and records it in the fragment.
    page.fill("#pattern", "eval.*")
    page.press("#pattern", "Enter")
    page.locator("section.pb-slot[data-channel='eval.*'] .pulseboard-chart").wait_for()
    wait_until(lambda: hook(page, "series()", 1) == ["eval.x:step", "eval.x:loss", "eval.x:acc"],
               what="the eval chart's series")
    assert "ch=eval.*" in page.evaluate("decodeURIComponent(location.hash)")
    # A bad pattern is refused in place, not sent anywhere.
    page.fill("#pattern", "no spaces")
    page.press("#pattern", "Enter")
    assert page.evaluate("document.getElementById('pattern').validationMessage")
    assert page.locator(".pb-slot").count() == 2


@pytest.mark.parametrize("transport", ["sse", "poll"])
def test_a_new_run_joins_over_sse_and_long_poll(page: Any, server: ServerProcess, transport: str) -> None:
    t0 = time.time() - 100
    publish(server.url, run("exp.a", 5, t0))
    options = {"client": {"transports": [transport]}, "discoverEvery": 500}
    page.add_init_script(f"window.PULSEBOARD_OPTIONS = {json.dumps(options)};")
    page.goto(f"{server.url}/#token={VIEW}&ch=exp.*&x=step")
    wait_until(lambda: hook(page, "points()") == 5, 20, what="the first run")  # messages held
    assert page.get_attribute(".pulseboard-chart", "data-transport") == transport
    publish(server.url, run("exp.b", 4, t0))
    wait_until(lambda: hook(page, "points()") == 9, 30, what="the new run, resubscribed")
    wait_drawn(page)
    assert {s.split(":")[0] for s in hook(page, "series()")} == {"exp.a", "exp.b"}
    assert page.get_attribute(".pulseboard-chart", "data-points") == "18"  # values: loss and acc
    # Both keep flowing after the reconnect that added the new channel (nothing lost, nothing twice).
    publish(server.url, run("exp.a", 2, t0, start=5) + run("exp.b", 2, t0, start=4))
    wait_until(lambda: hook(page, "points()") == 13, 30, what="both runs live")
    assert hook(page, "seqs('exp.a')") == list(range(1, 8)) and hook(page, "seqs('exp.b')") == list(range(1, 7))
