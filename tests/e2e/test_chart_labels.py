"""The y labels a chart paints match the data it draws, at every frame, with data arriving
after the chart opened: falling, rising, zoomed, log y, smoothed and pattern charts, in the
widget and the dashboard. The labels are read from what uPlot painted and the line from the
canvas pixels (tests/harness/painted.py), never from the chart's own idea of its range."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, feed, hook, publish, wait_drawn
from harness.painted import check_labels, check_x_at_peak, labels_cover, seconds, ticks
from harness.servers import ServerProcess, wait_until
from harness.tokens import token

pytestmark = pytest.mark.browser
SHOTS = Path("/work/wt/shots")


def falling(i: float) -> float:
    return 2.0 * math.exp(-i / 25) + 0.05


def rising(i: float) -> float:
    return 0.4 + 0.025 * i


def open_chart(page: Any, page_server: PageServer, server: ServerProcess, **over: Any) -> str:
    state = widget_state(url=server.url, token=VIEW, height=260, x="step", **over)
    open_widget(page, page_server.url, state)
    # A plain channel goes live at once (no data yet); a pattern once a channel matches.
    page.wait_for_selector(".pulseboard-chart[data-status=live]" if over.get("fields") and
                           "*" not in over["channels"][0] else ".pulseboard-chart")
    colors = hook(page, "colors()")
    return str(colors[0]) if colors else ""


def truth_of(f: Any, upto: int) -> Any:
    return lambda x: f(x) if 0 <= x < upto and float(x).is_integer() else None


@pytest.mark.parametrize("shape", ["falling", "rising"])
def test_widget_labels_follow_the_data(page: Any, server: ServerProcess, page_server: PageServer,
                                       shape: str) -> None:
    f = falling if shape == "falling" else rising
    color = open_chart(page, page_server, server, channels=["demo.r"], fields=["loss"])
    n = [0]

    def check() -> None:
        n[0] = hook(page, "range()")["x"][1] + 1
        if n[0] >= 30:  # a few labelled columns hold data
            check_labels(page, color, truth_of(f, int(n[0])))
            vals = [f(i) for i in range(int(n[0]))]
            labels_cover(page, min(vals), max(vals))

    feed(server.url, "demo.r", page, f, range(0, 120), check=check)


def test_widget_labels_after_zoom_and_new_data(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    color = open_chart(page, page_server, server, channels=["demo.z"], fields=["loss"])
    feed(server.url, "demo.z", page, falling, range(0, 100))
    # Zoom into the right half (keyboard: + halves the range around its middle, → pans right).
    page.focus(".u-over")
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the zoom")
    wait_drawn(page)
    x0, x1 = hook(page, "range()")["x"]
    check_labels(page, color, lambda x: falling(x) if x0 <= x <= x1 and float(x).is_integer() else None)
    labels_cover(page, falling(math.ceil(x1)), falling(math.floor(x0)))
    # Data goes on arriving; the zoomed view keeps its labels true.
    feed(server.url, "demo.z", page, falling, range(100, 140))
    wait_drawn(page)
    check_labels(page, color, lambda x: falling(x) if x0 <= x <= x1 and float(x).is_integer() else None)


def test_widget_log_y_labels(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    color = open_chart(page, page_server, server, channels=["demo.l"], fields=["loss"], log_y=True)
    f = lambda i: 3.0 * math.exp(-i / 12) + 0.001  # noqa: E731  (three decades)
    feed(server.url, "demo.l", page, f, range(0, 100),
         check=lambda: check_labels(page, color, truth_of(f, int(hook(page, "range()")["x"][1]) + 1), log=True)
         if hook(page, "range()")["x"][1] >= 30 else None)


def test_widget_smoothed_labels(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    color = open_chart(page, page_server, server, channels=["demo.s"], fields=["loss"], smoothing=0.6)

    def smoothed_truth() -> Any:
        pts = {x: sm for x, _raw, sm in hook(page, "smoothed('loss')")}
        return lambda x: pts.get(x)

    feed(server.url, "demo.s", page, falling, range(0, 120),
         check=lambda: check_labels(page, color, smoothed_truth()) if hook(page, "range()")["x"][1] >= 30 else None)


def test_widget_pattern_labels(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    open_chart(page, page_server, server, channels=["train.*"], fields=["loss"])
    curves = {"train.a": falling, "train.b": lambda i: 0.5 * falling(i) + 0.4}
    t0 = time.time()
    # Both runs start after the chart opened; the pattern finds them.
    for a in range(0, 120, 20):
        publish(server.url, [{"ch": ch, "data": {"step": i, "loss": f(i)}, "ts": t0 + i}
                             for ch, f in curves.items() for i in range(a, a + 20)])
        wait_until(lambda a=a: (hook(page, "points()") or 0) == 2 * (a + 20), 30, what=f"both runs to step {a + 19}")
        wait_drawn(page)
        if a >= 40:
            names, colors = hook(page, "names()"), hook(page, "colors()")
            for name, color in zip(names, colors, strict=True):
                check_labels(page, color, truth_of(curves[name.split(" · ")[0]], a + 20))
            vals = [f(i) for f in curves.values() for i in range(a + 20)]
            labels_cover(page, min(vals), max(vals))


def test_dashboard_labels_follow_the_data(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}/#token={VIEW}&ch=train.*&x=step")
    page.locator("section.pb-slot[data-channel='train.*'] .pulseboard-chart").wait_for()
    t0 = time.time()
    for a in range(0, 120, 20):
        publish(server.url, [{"ch": "train.run1", "data": {"step": i, "loss": falling(i)}, "ts": t0 + i}
                             for i in range(a, a + 20)])
        wait_until(lambda a=a: (hook(page, "range()") or {"x": [0, 0]})["x"][1] >= a + 19, 30,
                   what=f"step {a + 19} drawn")
        wait_drawn(page)
        if a >= 20:
            i = hook(page, "names()").index("train.run1 · loss")
            check_labels(page, hook(page, "colors()")[i], truth_of(falling, a + 20))
            labels_cover(page, falling(a + 19), falling(0))


def start_run(url: str, project: str, name: str, lr: float) -> None:
    body = {"project": project, "name": name, "op": "start", "config": {"lr": lr}}
    assert httpx.post(url + "/runs", json=body, headers={"Authorization": f"Bearer {token()}"}).status_code == 200


def test_widget_labels_after_run_colours_arrive_late(page: Any, server: ServerProcess,
                                                     page_server: PageServer) -> None:
    """`color_by`: the run colours come after the data was drawn (the run records are written
    later) and rebuild the plot; the labels stay those of the data."""
    curves = {"cb.a": lambda i: 5.0 + 3.0 * math.exp(-i / 20), "cb.b": lambda i: 4.0 + 2.0 * math.exp(-i / 30)}
    publish(server.url, [{"ch": ch, "data": {"step": i, "loss": f(i)}} for ch, f in curves.items() for i in range(60)])
    open_chart(page, page_server, server, channels=["cb.*"], fields=["loss"], window=None, color_by="lr")
    wait_until(lambda: (hook(page, "points()") or 0) == 120, 30, what="both runs held")
    wait_drawn(page)
    before = hook(page, "colors()")
    for name, lr in (("a", 0.1), ("b", 0.01)):
        start_run(server.url, "cb", name, lr)
    wait_until(lambda: hook(page, "colors()") != before, 60, what="the run colours")
    wait_drawn(page)
    vals = [f(i) for f in curves.values() for i in range(60)]
    labels_cover(page, min(vals), max(vals))
    for name, color in zip(hook(page, "names()"), hook(page, "colors()"), strict=True):
        check_labels(page, color, truth_of(curves[name.split(" · ")[0]], 60))
    # A row click in a linked runs table sets the chart's channels (Runs.link): the chart starts
    # over on run b alone, and its colour comes again after the data.
    page.evaluate("() => { window.model.set('channels', ['cb.b']); }")
    wait_until(lambda: hook(page, "series()") == ["cb.b:loss"] and hook(page, "points()") == 60, 30,
               what="the chart to draw run b only")
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-color-by") == "lr", 30, what="run b's colour")
    wait_drawn(page)
    b = [curves["cb.b"](i) for i in range(60)]
    labels_cover(page, min(b), max(b))
    check_labels(page, hook(page, "colors()")[0], truth_of(curves["cb.b"], 60))


def whole_steps(page: Any) -> None:
    """A step axis labels whole steps only (a step of 2.5 does not exist)."""
    xs = [t for t, _ in ticks(page)["x"]]
    assert len(xs) >= 2 and all(t.lstrip("-").isdigit() for t in xs), f"x labels on a step axis: {xs}"


def spike(k: int) -> Any:
    return lambda i: 1.0 if i == k else 0.0


@pytest.mark.parametrize("steps,k", [(13, 7), (41, 23), (200, 137)])
def test_widget_x_labels_true_to_the_data(page: Any, server: ServerProcess, page_server: PageServer,
                                          steps: int, k: int) -> None:
    """A spike at a known step sits where the painted x labels say it does (ticks 2.5 apart once
    read "3" where x was 2.5), before and after a zoom."""
    color = open_chart(page, page_server, server, channels=["demo.x"], fields=["loss"], window=None)
    feed(server.url, "demo.x", page, spike(k), range(steps), batch=steps)
    check_x_at_peak(page, color, k)
    if SHOTS.is_dir() and steps == 41:
        page.screenshot(path=str(SHOTS / "chart-verify-step-axis.png"))
    whole_steps(page)
    page.focus(".u-over")
    page.keyboard.press("+")
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the zoom")
    wait_drawn(page)
    x0, x1 = hook(page, "range()")["x"]
    if x0 <= k <= x1:
        check_x_at_peak(page, color, k)
    whole_steps(page)


def test_dashboard_x_labels_true_to_the_data(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}/#token={VIEW}&ch=train.*&x=step")
    page.locator("section.pb-slot[data-channel='train.*'] .pulseboard-chart").wait_for()
    publish(server.url, [{"ch": "train.sp", "data": {"step": i, "loss": spike(7)(i)}, "ts": time.time() + i}
                         for i in range(13)])
    wait_until(lambda: (hook(page, "range()") or {"x": [0, 0]})["x"][1] >= 12, 30, what="step 12 drawn")
    wait_drawn(page)
    i = hook(page, "names()").index("train.sp · loss")
    check_x_at_peak(page, hook(page, "colors()")[i], 7)
    whole_steps(page)


def test_widget_time_labels_true_to_the_data(page: Any, server: ServerProcess, page_server: PageServer) -> None:
    """On a time axis a spike at a known time sits where the painted labels say, also zoomed in
    to ticks half a second apart (":27.500")."""
    state = widget_state(url=server.url, token=VIEW, height=260, channels=["demo.t"], fields=["loss"], window=None)
    open_widget(page, page_server.url, state)
    page.wait_for_selector(".pulseboard-chart[data-status=live]")  # subscribed: the data arrives live
    # A recent minute's :20, so 20 s of data stay within one minute's labels. (Not a fixed date:
    # data older than the 30-day retention is trimmed at the store's first batch, and a chart
    # that subscribed after that found nothing to backfill: a CI failure on a loaded machine.)
    t0 = (time.time() // 60 - 2) * 60 + 20
    publish(server.url, [{"ch": "demo.t", "data": {"loss": 1.0 if i == 23 else 0.0}, "ts": t0 + i * 0.5}
                         for i in range(41)])
    wait_until(lambda: hook(page, "points()") == 41, 30, what="the points held")
    wait_drawn(page)
    color = hook(page, "colors()")[0]
    check_x_at_peak(page, color, 31.5, value=seconds)
    page.focus(".u-over")
    for _ in range(2):  # around the middle: :27.5 to :32.5, the spike inside
        page.keyboard.press("+")
    wait_until(lambda: hook(page, "range()")["zoomed"], what="the zoom")
    wait_drawn(page)
    wait_until(lambda: any("." in t for t, _ in ticks(page)["x"]), 30, what="sub-second x labels after the zoom")
    check_x_at_peak(page, color, 31.5, value=seconds)


def test_widget_labels_when_run_colours_come_before_the_data(page: Any, server: ServerProcess,
                                                             page_server: PageServer) -> None:
    """`color_by` with the run colours known before any data (a row click restarts the chart on
    a run that exists): the plot is rebuilt in the frame the first data arrives in, and its
    labels must still be those of the data (they read 0 to 1 until log y was toggled)."""
    start_run(server.url, "cf", "a", 0.1)
    open_chart(page, page_server, server, channels=["cf.a"], fields=["loss"], window=None, color_by="lr")
    wait_until(lambda: page.get_attribute(".pulseboard-chart", "data-color-by") == "lr", 30, what="the run colours")
    wait_drawn(page)
    f = lambda i: 5.0 + 3.0 * math.exp(-i / 20)  # noqa: E731  (far from 0 to 1)
    publish(server.url, [{"ch": "cf.a", "data": {"step": i, "loss": f(i)}} for i in range(60)])
    wait_until(lambda: hook(page, "points()") == 60, 30, what="the data held")
    wait_drawn(page)
    labels_cover(page, f(59), f(0))
    check_labels(page, hook(page, "colors()")[0], truth_of(f, 60))
