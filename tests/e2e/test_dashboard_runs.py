"""The dashboard compares runs: a pattern chart goes against `step` when the runs carry it,
leaves step-like fields off the y axis unless picked in the field picker, shows no growing lag
for finished runs, and follows the URL's fragment when it is edited."""

from __future__ import annotations

import os
import time
import urllib.parse
from typing import Any

import pytest

from harness.charts import VIEW, hook, publish, wait_drawn
from harness.painted import ticks
from harness.servers import ServerProcess, wait_until

pytestmark = pytest.mark.browser


def runs(server: ServerProcess, names: list[str], n: int = 60) -> None:
    t0 = time.time() - 600  # finished ten minutes ago
    publish(server.url, [
        {"ch": ch, "data": {"step": i * 10, "epoch": i // 20, "batch": i % 20, "loss": (1 + k) / (i + 1),
                            "acc": i / n}, "ts": t0 + i}
        for k, ch in enumerate(names) for i in range(n)
    ])


def series(page: Any) -> list[str]:
    return sorted(hook(page, "series()") or [])


def fragment(page: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(page.evaluate("location.hash.slice(1)"))


def test_pattern_chart_against_step_with_a_field_picker(page: Any, server: ServerProcess) -> None:
    runs(server, ["train.a", "train.b"])
    page.goto(f"{server.url}/#token={VIEW}&ch=train.*")
    wait_until(lambda: series(page) == ["train.a:acc", "train.a:loss", "train.b:acc", "train.b:loss"],
               what="loss and acc of both runs, and nothing step-like")
    wait_drawn(page)
    # x is step: the axis is labelled so and its labels are steps, not times of day.
    x_labels = [t for t, _ in ticks(page)["x"]]
    assert all(t.isdigit() for t in x_labels) and int(x_labels[-1]) <= 590, x_labels
    assert hook(page, "range()")["x"] == [0, 590]  # steps (a time axis would read ~1.8e9)
    # The picker offers every field the runs carry (step is the x axis).
    boxes = page.locator("#fields input")
    wait_until(lambda: boxes.count() == 4, what="the field picker")
    offered = {boxes.nth(i).get_attribute("value"): boxes.nth(i).is_checked() for i in range(4)}
    assert offered == {"acc": True, "batch": False, "epoch": False, "loss": True}
    if os.environ.get("PULSEBOARD_SHOTS"):
        page.screenshot(path=os.path.join(os.environ["PULSEBOARD_SHOTS"], "chart-truth-item5-dashboard-after.png"))
    # Picking epoch plots it; unpicking acc leaves it out; the fragment records the choice.
    page.locator("#fields input[value=epoch]").check()
    wait_until(lambda: series(page) == ["train.a:acc", "train.a:epoch", "train.a:loss", "train.b:acc",
                                        "train.b:epoch", "train.b:loss"], what="epoch plotted")
    page.locator("#fields input[value=acc]").uncheck()
    wait_until(lambda: series(page) == ["train.a:epoch", "train.a:loss", "train.b:epoch", "train.b:loss"],
               what="acc left out")
    assert sorted(fragment(page)["y"]) == ["epoch", "loss"]
    # Finished runs: no lag that grows with their age.
    status = page.locator(".pulseboard-status")
    wait_until(lambda: "no new messages" in status.inner_text(), what="the status of finished runs")
    assert "lag" not in status.inner_text()


def test_editing_the_fragment_updates_the_view(page: Any, server: ServerProcess) -> None:
    runs(server, ["train.a", "eval.a"])
    page.goto(f"{server.url}/#token={VIEW}&ch=train.*")
    wait_until(lambda: series(page) == ["train.a:acc", "train.a:loss"], what="the train chart")
    # Another pattern, by hand.
    page.evaluate(f"location.hash = 'token={VIEW}&ch=eval.*&y=loss'")
    page.locator("section.pb-slot[data-channel='eval.*'] .pulseboard-chart").wait_for()
    wait_until(lambda: page.locator("section.pb-slot").count() == 1, what="the train chart to go")
    wait_until(lambda: series(page) == ["eval.a:loss"], what="only loss of the eval run")
    assert page.locator("#picker input[value='eval.*']").is_checked()
    # Time on x, asked for in the fragment.
    page.evaluate(f"location.hash = 'token={VIEW}&ch=eval.*&y=loss&x=time'")
    wait_until(lambda: (hook(page, "range()") or {"x": [0, 0]})["x"][0] > 1e9, what="a time axis")
    # Both patterns.
    page.evaluate(f"location.hash = 'token={VIEW}&ch=eval.*&ch=train.*'")
    wait_until(lambda: page.locator("section.pb-slot .pulseboard-chart").count() == 2, what="two charts")
    wait_until(lambda: series(page) == ["eval.a:acc", "eval.a:loss"], what="eval chart back to the default fields")
