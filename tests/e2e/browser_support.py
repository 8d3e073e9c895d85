"""Helpers for the browser tests: chromium settings, a steady publisher, the chart's debug hook."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from support import ROOT, token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
STATIC = ROOT / "widget" / "pulseboard" / "static"


def bundle_built() -> bool:
    js = STATIC / "dashboard.js"
    return bool(js.exists() and js.stat().st_size > 1000)


class Feeder:
    """Publishes `{"v": ...}` to channels at a steady rate from a thread, until stopped.

    Publishing goes over HTTP from the test process, so it is unaffected by what the
    browser's network does; while the server is down, publishes fail and are skipped.
    """

    def __init__(self, url: str, channels: list[str], hz: float = 20.0) -> None:
        self.url = url
        self.channels = channels
        self.period = 1.0 / hz
        self.token = token(sub="feeder")
        self.sent: dict[str, list[int]] = {ch: [] for ch in channels}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish(self, ch: str, n: int = 1) -> list[int]:
        now = time.time()
        body = [{"ch": ch, "data": {"v": math.sin(now + i / 10), "i": i}, "ts": now} for i in range(n)]
        req = urllib.request.Request(
            self.url + "/publish", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            seqs: list[int] = json.loads(r.read())["seqs"]
        self.sent[ch] += seqs
        return seqs

    def _run(self) -> None:
        deadline = time.monotonic() + 600  # bounded, whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not self._paused.is_set():
                for ch in self.channels:
                    try:
                        self.publish(ch)
                    except (urllib.error.URLError, OSError):
                        pass
            self._stop.wait(self.period)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


HOOK = """(ch) => {
    for (const el of document.querySelectorAll('.pulseboard-chart')) {
        const h = el.__pulseboard;
        if (h && h.series().some((s) => s.startsWith(ch + ':'))) {
            return {points: h.points(), seqs: h.seqs(ch), segments: h.segments(ch), gaps: h.gaps(ch),
                    status: h.status, transport: h.transport};
        }
    }
    return null;
}"""


def chart_state(page: Any, ch: str) -> dict[str, Any]:
    """What the chart of `ch` holds, through its read-only debug hook."""
    state: dict[str, Any] | None = page.evaluate(HOOK, ch)
    return state or {"points": 0, "seqs": [], "segments": [], "gaps": 0, "status": None, "transport": None}


def assert_contiguous(seqs: list[int]) -> None:
    """No gap and no duplicate: each seq is one more than the one before."""
    assert seqs, "no data"
    bad = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
    assert not bad, f"gaps or duplicates at {bad[:10]} in {len(seqs)} seqs"
