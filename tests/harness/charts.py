"""Helpers for the chart tests: publishing batches and reading a chart through its debug hook."""

from __future__ import annotations

import json
import urllib.request
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
