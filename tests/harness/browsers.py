"""Helpers for the browser tests: chromium settings, a steady publisher, the chart's debug hook."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import itertools
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.servers import ROOT
from harness.tokens import token

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
STATIC = ROOT / "widget" / "pulseboard" / "static"


def bundle_built() -> bool:
    js = STATIC / "dashboard.js"
    return bool(js.exists() and js.stat().st_size > 1000)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless chromium through Playwright; fails the test (never skips) when missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/setup (apt-get install chromium)")
    if not bundle_built():
        pytest.fail("the JS bundle is not built: run `npm ci && npm run build` in js/")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


Make = Callable[[str, int, float], dict[str, Any]]


class Feeder:
    """Publishes `{"v": ...}` to channels at a steady rate from a thread, until stopped.

    Publishing goes over HTTP from the test process, so it is unaffected by what the
    browser's network does; while the server is down, publishes fail and are skipped.
    """

    def __init__(self, url: str, channels: list[str], hz: float = 20.0, make: Make | None = None) -> None:
        self.url = url
        self.channels = channels
        self.period = 1.0 / hz
        self.make: Make = make or (lambda ch, i, t: {"v": math.sin(t / 2 + i / 10), "i": i})
        self.count = 0
        self.token = token(sub="feeder")
        self.sent: dict[str, list[int]] = {ch: [] for ch in channels}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def publish(self, ch: str, n: int = 1, spread: float = 0.0) -> list[int]:
        """Publish `n` messages at once; `spread` seconds back-dates them evenly (history)."""
        now = time.time()
        body = []
        for k in range(n):
            t = now - spread * (n - 1 - k) / max(1, n - 1)
            body.append({"ch": ch, "data": self.make(ch, self.count, t), "ts": t})
            self.count += 1
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
                    except (OSError, http.client.HTTPException):
                        pass  # the server is down or went down mid-answer (IncompleteRead): skipped
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


WIDGET_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>widget</title>
<style>
  body { margin: 0; padding: 24px; background: #eef0f3; font-family: system-ui, sans-serif; }
  .cell { background: var(--jp-layout-color0); border: 1px solid #d8dbe0; border-radius: 4px;
          padding: 12px 16px; max-width: 980px; }
  .cell pre { margin: 0 0 10px; font: 13px/1.4 monospace; color: #333; }
</style></head>
<body>
<div class="cell" id="cell"><pre id="code"></pre><div id="w"></div></div>
<script type="module">
class Model {
  // Stands in for the kernel too: it holds the token (never in the synced state) and answers
  // the widget's `token-request` messages with it; `set("token", t)` is the kernel pushing one.
  constructor(state) {
    this.kernelToken = state.token || ""; delete state.token;
    this.state = state; this.handlers = {}; this.saves = 0; this.sent = [];
  }
  get(k) { return this.state[k]; }
  set(k, v) {
    if (k === "token") { this.kernelToken = v; this.custom({ type: "token", token: v }); return; }
    this.state[k] = v; (this.handlers["change:" + k] || []).forEach((cb) => cb());
  }
  custom(msg) { setTimeout(() => (this.handlers["msg:custom"] || []).forEach((cb) => cb(msg, [])), 0); }
  send(msg) {
    this.sent.push(msg);
    if (msg.type === "token-request" && this.kernelToken) this.custom({ type: "token", token: this.kernelToken });
  }
  save_changes() { this.saves += 1; }
  on(e, cb) { (this.handlers[e] = this.handlers[e] || []).push(cb); }
  off(e, cb) { this.handlers[e] = (this.handlers[e] || []).filter((f) => f !== cb); }
}
const { default: widget } = await import("./static/widget.js");
window.model = new Model(window.WIDGET_STATE);
document.getElementById("code").textContent = window.WIDGET_CODE || "";
const cell = document.getElementById("cell");
for (const [k, v] of Object.entries(window.WIDGET_VARS || {})) cell.style.setProperty(k, v);
window.cleanup = widget.render({ model: window.model, el: document.getElementById("w") });
window.widgetReady = true;
</script></body></html>"""

LIGHT_VARS = {"--jp-layout-color0": "#ffffff", "--jp-ui-font-color1": "rgba(0,0,0,0.87)",
              "--jp-border-color2": "#e0e0e0"}
DARK_VARS = {"--jp-layout-color0": "#111111", "--jp-ui-font-color1": "rgba(255,255,255,0.87)",
             "--jp-border-color2": "#333333"}


def widget_state(**over: Any) -> dict[str, Any]:
    """A LiveChart's synced state as the Python side would send it."""
    state: dict[str, Any] = {
        "channels": [], "fields": None, "window": 300.0, "url": "", "token": "", "title": None,
        "height": 300, "x": None, "units": None, "max_points": 20000, "theme": "auto", "problem": "",
        "_snapshot": None, "_static_id": "", "status": "connecting", "error": "",
    }
    state.update(over)
    return state


class PageServer:
    """Serves the widget test page and the built bundle from its own origin (as JupyterLab
    would: the chart then talks to the pulseboard server cross-origin)."""

    def __init__(self) -> None:
        page = WIDGET_PAGE.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/widget-test":
                    body, kind = page, "text/html"
                elif path.startswith("/static/") and (STATIC / path[8:]).is_file() and ".." not in path:
                    body, kind = (STATIC / path[8:]).read_bytes(), "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def open_widget(page: Any, page_url: str, state: dict[str, Any], code: str = "",
                css_vars: dict[str, str] | None = None) -> None:
    """Render the widget bundle with an anywidget-like model on the page server's origin."""
    page.add_init_script(
        f"window.WIDGET_STATE = {json.dumps(state)}; window.WIDGET_CODE = {json.dumps(code)};"
        f"window.WIDGET_VARS = {json.dumps(css_vars or LIGHT_VARS)};"
    )
    page.goto(page_url + "/widget-test")
    page.wait_for_function("window.widgetReady === true")
