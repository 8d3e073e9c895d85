"""Helpers for the chart tests: publishing batches and reading a chart through its debug hook."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from harness.servers import wait_until
from harness.tokens import token

VIEW = token(sub="viewer", read=["*"], publish=[])


def publish(url: str, msgs: list[dict[str, Any]], batch: int = 5000) -> list[int]:
    """POST the messages in batches; returns every seq the server gave them."""
    seqs: list[int] = []
    tok = token(sub="publisher")
    for i in range(0, len(msgs), batch):
        req = urllib.request.Request(
            url + "/publish", data=json.dumps(msgs[i:i + batch]).encode(), method="POST",
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            seqs += json.loads(r.read())["seqs"]
    return seqs


def hook(page: Any, expr: str, nth: int = 0) -> Any:
    """Evaluate `h.<expr>` on the debug hook of the `nth` chart on the page."""
    return page.evaluate(
        f"() => {{ const el = document.querySelectorAll('.pulseboard-chart')[{nth}];"
        f" const h = el && el.__pulseboard; return h ? h.{expr} : null; }}"
    )


def wait_points(page: Any, n: int, nth: int = 0, timeout: float = 60) -> None:
    wait_until(lambda: (hook(page, "points()", nth) or 0) >= n, timeout, what=f"{n} points held")


def wait_drawn(page: Any, nth: int = 0) -> None:
    """Wait until the chart has drawn everything it was given (no frame pending)."""
    wait_until(lambda: hook(page, "idle()", nth), what="the chart to draw")


def feed(url: str, ch: str, page: Any, f: Callable[[int], float], steps: range, batch: int = 10, nth: int = 0,
         check: Callable[[], object] | None = None) -> None:
    """Publish `steps` in batches, each drawn before the next (many frames, moving data);
    `check()` runs after every batch."""
    t0 = time.time()
    for a in range(steps.start, steps.stop, batch):
        b = min(steps.stop, a + batch)
        publish(url, [{"ch": ch, "data": {"step": i, "loss": f(i), "lr": 0.1}, "ts": t0 + i / 10}
                      for i in range(a, b)])
        wait_until(lambda b=b: hook(page, "points()", nth) == b, what=f"step {b - 1} held")
        wait_drawn(page, nth)
        if check:
            check()


def drag_zoom(page: Any, start: float, end: float, plot: str = ".u-over") -> None:
    """Drag across the plot from `start` to `end` (shares of its width), as a person zooms."""
    over = page.locator(plot).first.bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * start, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * (start + end) / 2, y, steps=5)
    page.mouse.move(over["x"] + over["width"] * end, y, steps=5)
    page.mouse.up()

