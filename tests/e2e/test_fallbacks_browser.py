"""Fallbacks in chromium, where proxies block transports: WebSocket blocked → SSE, SSE blocked too → long-poll,
block lifted → back to WebSocket; no gap and no duplicate across any switch."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from harness.browsers import Feeder, assert_contiguous, chart_state
from harness.servers import ServerProcess, wait_until
from harness.tokens import token

pytestmark = pytest.mark.browser
CH = "sys.fallback"
UPGRADE_MS = 1500


class Blocker:
    """Blocks the page's WebSockets and/or SSE requests until lifted; counts what it blocked."""

    def __init__(self, page: Any) -> None:
        self.ws = False
        self.sse = False
        self.blocked = {"ws": 0, "sse": 0}
        page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), self._on_ws)
        page.route(re.compile(r".*/sse(\?.*)?$"), self._on_sse)

    def _on_ws(self, ws: Any) -> None:
        if self.ws:
            self.blocked["ws"] += 1
            ws.close(code=1011, reason="blocked by the test")
        else:
            ws.connect_to_server()

    def _on_sse(self, route: Any) -> None:
        if self.sse:
            self.blocked["sse"] += 1
            route.abort("connectionrefused")
        else:
            route.continue_()


def open_dashboard(page: Any, server: ServerProcess) -> None:
    page.add_init_script(f"window.PULSEBOARD_OPTIONS = {{client: {{upgradeInterval: {UPGRADE_MS}}}}}")
    page.goto(f"{server.url}/#token={token(sub='viewer', publish=['app.*'])}&ch={CH}")


def history(server: ServerProcess, ch: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{server.url}/history?ch={ch}",
                                 headers={"Authorization": f"Bearer {token()}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return [m["data"] for m in json.loads(r.read())["msgs"]]


def wait_transport(page: Any, kind: str, more_than: int) -> dict[str, Any]:
    """Live on `kind`, with more points than `more_than` (so data flows over it)."""
    return wait_until(  # type: ignore[no-any-return]
        lambda: (s := chart_state(page, CH))["status"] == "live" and s["transport"] == kind
        and s["points"] > more_than + 5 and s,
        30, what=f"a live chart over {kind}",
    )


def check_exact(page: Any) -> None:
    state = chart_state(page, CH)
    assert state["gaps"] == 0
    assert_contiguous(state["seqs"])


def test_websocket_blocked_falls_back_to_sse_then_climbs_back(
    page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feeder(server.url, [CH])
    blocker = Blocker(page)
    blocker.ws = True
    open_dashboard(page, server)
    on_sse = wait_transport(page, "sse", 0)
    assert blocker.blocked["ws"] >= 3
    assert on_sse["seqs"][0] == 1  # the backfill came over SSE
    check_exact(page)
    # Publishing from a fallback goes over `POST publish`.
    page.evaluate(f"window.__pulseboard.chart({CH!r}).client.publish('app.from-page', {{x: 1}})")
    assert history(server, "app.from-page") == [{"x": 1}]
    blocker.ws = False
    wait_transport(page, "ws", on_sse["points"])
    check_exact(page)


def test_websocket_and_sse_blocked_fall_back_to_poll_then_climb_back(
    page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feeder(server.url, [CH])
    blocker = Blocker(page)
    open_dashboard(page, server)
    on_ws = wait_transport(page, "ws", 0)
    # Cut the WebSocket and keep it blocked: the chart moves to SSE with its data.
    blocker.ws = True
    page.evaluate(f"window.__pulseboard.chart({CH!r}).client.reconnectNow()")
    on_sse = wait_transport(page, "sse", on_ws["points"])
    check_exact(page)
    # Block SSE too: the next drop lands on long-poll.
    blocker.sse = True
    page.evaluate(f"window.__pulseboard.chart({CH!r}).client.reconnectNow()")
    on_poll = wait_transport(page, "poll", on_sse["points"])
    assert blocker.blocked["sse"] >= 3
    check_exact(page)
    # Lift both blocks: the client climbs back to the WebSocket.
    blocker.ws = blocker.sse = False
    wait_transport(page, "ws", on_poll["points"])
    check_exact(page)
