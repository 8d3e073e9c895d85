"""The standalone dashboard in chromium against real `pulseboard serve` processes."""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.browsers import DARK_VARS, Feeder, PageServer, assert_contiguous, chart_state, open_widget, widget_state
from harness.servers import ROOT, RedisProcess, ServerProcess, wait_until
from harness.tokens import token

pytestmark = pytest.mark.browser
CH = "sys.test"


def open_dashboard(page: Any, server: ServerProcess, *channels: str) -> None:
    frag = f"token={token(sub='viewer', read=['*'], publish=[])}" + "".join(f"&ch={c}" for c in channels)
    page.goto(f"{server.url}/#{frag}")


def wait_live(page: Any, ch: str, min_points: int = 1, timeout: float = 20) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (s := chart_state(page, ch))["status"] == "live" and s["points"] >= min_points and s,
        timeout, what=f"chart of {ch} live with {min_points} points",
    )


def test_dashboard_goes_live_and_points_grow(
    page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feed = feeder(server.url, [CH, "app.other"])
    wait_until(lambda: len(feed.sent[CH]) >= 5, what="first publishes")
    open_dashboard(page, server)  # no &ch=: every sys.* channel the token may read
    first = wait_live(page, CH, 3)
    assert page.locator(".pulseboard-chart").count() == 1  # app.other is not sys.*
    assert page.locator(f"#picker input[value='{CH}']").is_checked()
    assert not page.locator("#picker input[value='app.other']").is_checked()
    wait_until(lambda: chart_state(page, CH)["points"] >= first["points"] + 20, what="points to grow")
    state = chart_state(page, CH)
    assert state["transport"] == "ws"
    assert state["seqs"][0] == 1  # backfill brought what was published before the page opened
    assert_contiguous(state["seqs"])
    # Picking a channel adds its chart.
    page.locator("#picker input[value='app.other']").check()
    wait_live(page, "app.other", 3)
    assert "ch=app.other" in page.evaluate("location.hash")


def test_dashboard_under_a_base_path(
    page: Any, server_factory: Callable[..., ServerProcess], feeder: Callable[..., Feeder]
) -> None:
    server = server_factory("--base-path", "/pb/board")
    assert server.url.endswith("/pb/board")
    feeder(server.url, [CH])
    open_dashboard(page, server, CH)
    assert page.url.startswith(server.url + "/#")
    wait_live(page, CH, 5)


def test_a_refused_token_says_so(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}/#token=not-a-jwt")
    note = page.locator(".pb-note")
    note.wait_for()
    assert "refused the token" in note.inner_text()
    page.goto(f"{server.url}/#")
    page.reload()
    assert "no token" in page.locator(".pb-note").inner_text()


def restart_and_check(page: Any, server: ServerProcess, make: Callable[[], ServerProcess],
                      feed: Feeder, same_epoch: bool) -> None:
    open_dashboard(page, server, CH)
    before = wait_live(page, CH, 20)
    server.kill()
    wait_until(lambda: chart_state(page, CH)["status"] != "live", what="the chart to notice the server died")
    restarted = make()
    assert restarted.port == server.port
    # Live again, and holding data published after the restart.
    wait_until(
        lambda: (s := chart_state(page, CH))["status"] == "live"
        and s["seqs"] and s["seqs"][-1] > 0 and s["points"] >= before["points"] + 20,
        30, what="the chart to reconnect and receive new data",
    )
    state = chart_state(page, CH)
    segments = state["segments"]
    for seg in segments:
        assert_contiguous(seg["seqs"])
    if same_epoch:
        assert state["gaps"] == 0
        assert len(segments) == 1
        assert_contiguous(state["seqs"])
    else:
        # The memory broker's numbering restarted: a new epoch, and the chart draws a break.
        assert state["gaps"] >= 1
        assert -1 in state["seqs"]
        epochs = [seg["epoch"] for seg in segments]
        assert len(set(epochs)) >= 2 and epochs[0] != epochs[-1]


def test_server_restart_on_the_same_port_memory_broker(
    page: Any, server_factory: Callable[..., ServerProcess], feeder: Callable[..., Feeder]
) -> None:
    server = server_factory("--broker", "memory://")
    feed = feeder(server.url, [CH])
    restart_and_check(page, server, lambda: server_factory("--broker", "memory://", port=server.port), feed,
                      same_epoch=False)


@pytest.mark.redis
def test_server_restart_on_the_same_port_redis_broker(
    page: Any, server_factory: Callable[..., ServerProcess], redis_server: RedisProcess,
    feeder: Callable[..., Feeder],
) -> None:
    server = server_factory("--broker", redis_server.url)
    feed = feeder(server.url, [CH])
    restart_and_check(
        page, server, lambda: server_factory("--broker", redis_server.url, port=server.port), feed,
        same_epoch=True,
    )


def test_a_burst_while_offline_is_filled_in(
    page: Any, context: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feed = feeder(server.url, [CH], hz=10)
    open_dashboard(page, server, CH)
    wait_live(page, CH, 10)
    context.set_offline(True)
    wait_until(lambda: chart_state(page, CH)["status"] != "live", what="the chart to go offline")
    feed.pause()
    burst = feed.publish(CH, 300)
    held = chart_state(page, CH)["seqs"]
    assert burst[-1] not in held  # the browser could not have seen it yet
    feed.resume()
    context.set_offline(False)
    wait_until(lambda: burst[-1] in chart_state(page, CH)["seqs"], 20, what="the burst to be filled in")
    state = chart_state(page, CH)
    assert state["status"] == "live"
    assert state["gaps"] == 0
    assert set(burst) <= set(state["seqs"])
    assert_contiguous(state["seqs"])


def connections(server: ServerProcess) -> int:
    with urllib.request.urlopen(server.url + "/healthz", timeout=2) as r:
        n: int = json.loads(r.read())["connections"]
        return n


def test_widget_goes_live_saves_a_snapshot_and_cleans_up(
    page_server: PageServer, page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feeder(server.url, [CH, "app.b"], hz=10)
    state = widget_state(channels=[CH, "app.b"], fields=["v"], url=server.url, token=token(publish=[]),
                         title="two channels")
    open_widget(page, page_server.url, state)
    wait_live(page, CH, 10)
    held = chart_state(page, CH)  # one reading: the feed goes on between two
    assert sorted(held["segments"][0]["seqs"]) == held["seqs"]
    wait_until(lambda: page.evaluate("model.get('status')") == "live", what="status written back")
    snap = wait_until(lambda: page.evaluate("model.get('_snapshot')"), what="a snapshot in the model")
    assert [s["ch"] for s in snap["series"]] == [CH, "app.b"]
    assert len(snap["x"]) > 5 and len(snap["y"]) == 2
    assert connections(server) == 1
    page.evaluate("window.cleanup()")
    assert page.locator(".pulseboard-chart").count() == 0
    wait_until(lambda: connections(server) == 0, what="the socket to close on cleanup")


def test_widget_without_a_server_shows_why_and_the_saved_snapshot(
    page_server: PageServer, page: Any, server: ServerProcess
) -> None:
    snap = {"v": 1, "series": [{"ch": CH, "field": "v"}], "x": [1_700_000_000 + i for i in range(50)],
            "y": [[float(i % 7) for i in range(50)]]}
    problem = "no pulseboard server configured: pass url= and token=, set PULSEBOARD_URL and PULSEBOARD_TOKEN"
    open_widget(page, page_server.url, widget_state(channels=[CH], problem=problem, _snapshot=snap))
    message = page.locator(".pulseboard-message")
    message.wait_for()
    assert "PULSEBOARD_URL" in message.inner_text()
    assert page.locator(".pulseboard-chart").get_attribute("data-status") == "offline"
    wait_until(lambda: chart_state(page, CH)["points"] == 50, what="the snapshot drawn")


def test_widget_with_a_refused_token_says_so(
    page_server: PageServer, page: Any, server: ServerProcess
) -> None:
    open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, token="not-a-jwt"))
    message = page.locator(".pulseboard-message")
    message.wait_for(timeout=20_000)
    assert "refused the token" in message.inner_text()
    assert page.locator(".pulseboard-chart").get_attribute("data-status") == "offline"


CLIENT = "document.querySelector('.pulseboard-chart').__pulseboardClient"


def test_widget_refreshes_its_token_before_expiry(
    page_server: PageServer, page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feeder(server.url, [CH])
    expiry = time.time() + 8
    short = token(publish=[], ttl=8)
    open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, token=short))
    wait_live(page, CH, 5)
    # Python hands out a fresh token; the browser sends `refresh` before the old one expires.
    page.evaluate("(t) => model.set('token', t)", token(publish=[], ttl=3600))
    wait_until(lambda: time.time() > expiry + 2 and chart_state(page, CH)["status"] == "live", 15,
               what="the first token's expiry to pass")
    assert time.time() > expiry
    before = chart_state(page, CH)["points"]
    wait_until(lambda: chart_state(page, CH)["points"] > before + 10, what="data after the expiry")
    assert page.evaluate(f"{CLIENT}.connects") == 1  # refreshed in place: never closed
    check = chart_state(page, CH)
    assert check["gaps"] == 0
    assert_contiguous(check["seqs"])


def test_widget_resumes_after_a_4001_close_without_losing_data(
    page_server: PageServer, page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    feeder(server.url, [CH])
    open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, token=token(ttl=6)))
    wait_live(page, CH, 5)
    # No fresh token before expiry: the server closes with 4001 and the chart waits for one.
    wait_until(lambda: chart_state(page, CH)["status"] == "reconnecting", 15, what="the 4001 close")
    held = chart_state(page, CH)["seqs"][-1]
    page.evaluate("(t) => model.set('token', t)", token(publish=[], ttl=3600))
    wait_until(lambda: (s := chart_state(page, CH))["status"] == "live" and s["seqs"][-1] > held + 20,
               20, what="the chart to resume with the new token")
    assert page.evaluate(f"{CLIENT}.connects") == 2
    state = chart_state(page, CH)
    assert state["gaps"] == 0
    assert_contiguous(state["seqs"])  # what was published during the wait was replayed

def test_a_silent_connection_is_detected_by_heartbeats(
    page: Any, server: ServerProcess, feeder: Callable[..., Feeder]
) -> None:
    """The first WebSocket goes quiet both ways (a dead NAT entry, say): no close, no data.
    The client's ping gets no pong, so it drops the socket and resumes on a new one."""
    feeder(server.url, [CH])
    silent = {"first": True}

    def handler(ws: Any) -> None:
        upstream = ws.connect_to_server()
        mute = silent["first"]
        silent["first"] = False
        frames = {"n": 0}

        def down(msg: Any) -> None:
            frames["n"] += 1
            if not mute or frames["n"] <= 30:
                ws.send(msg)

        def up(msg: Any) -> None:
            if not mute or frames["n"] <= 30:
                upstream.send(msg)

        upstream.on_message(down)
        ws.on_message(up)

    page.route_web_socket(re.compile(r".*/ws$"), handler)
    page.add_init_script("window.PULSEBOARD_OPTIONS = {client: {pingInterval: 1000, pongTimeout: 1000}}")
    open_dashboard(page, server, CH)
    wait_live(page, CH, 5)
    wait_until(lambda: page.evaluate(f"window.__pulseboard.chart({CH!r}).client.connects") == 2, 20,
               what="a reconnect after the missing pong")
    held = chart_state(page, CH)["seqs"][-1]
    wait_until(lambda: chart_state(page, CH)["seqs"][-1] > held + 10, what="data on the new socket")
    state = chart_state(page, CH)
    assert state["gaps"] == 0 and state["transport"] == "ws"
    assert_contiguous(state["seqs"])



def sys_metrics(ch: str, i: int, t: float) -> dict[str, float]:
    """Plausible host metrics for screenshots."""
    phase = 0.0 if ch.endswith("a") else 1.7
    cpu = 35 + 25 * math.sin(t / 23 + phase) + 8 * math.sin(t / 3.1) + 4 * math.sin(t * 1.7)
    return {
        "cpu_percent": round(max(0.0, min(100.0, cpu)), 1),
        "mem_percent": round(52 + 6 * math.sin(t / 90 + phase), 1),
        "swap_percent": 3.0,
        "load1": round(max(0.0, cpu / 25 + 0.3 * math.sin(t / 7)), 2),
        "net_rx_bps": round(max(0.0, 2.5e6 + 2e6 * math.sin(t / 11 + phase)), 0),
        "cpu_percent.0": round(max(0.0, min(100.0, cpu + 10 * math.sin(t / 2))), 1),
    }


def training(ch: str, i: int, t: float) -> dict[str, float]:
    step = i * 10
    return {
        "step": step,
        "loss": round(2.4 * math.exp(-step / 900) + 0.25 + 0.05 * math.sin(step / 13), 4),
        "val_loss": round(2.5 * math.exp(-step / 1000) + 0.32 + 0.02 * math.sin(step / 40), 4),
    }


def test_screenshots(
    page_server: PageServer, page: Any, server: ServerProcess, feeder: Callable[..., Feeder], tmp_path: Path
) -> None:
    chs = ["sys.node-a", "sys.node-b"]
    history = Feeder(server.url, chs, make=sys_metrics)
    for ch in chs:
        history.publish(ch, 300, spread=299)
    feeder(server.url, chs, hz=2, make=sys_metrics)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{server.url}/#token={token(publish=[])}")
    for ch in chs:
        wait_live(page, ch, 300)
    wait_until(lambda: " 0.0 msg/s" not in page.locator(".pulseboard-status").first.inner_text(),
               what="a message rate on the status line")
    # The README's pictures are refreshed with PULSEBOARD_SCREENSHOTS=1; otherwise they go to a temp dir.
    out = ROOT / "docs" / "img" if os.environ.get("PULSEBOARD_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "dashboard.png"))

    train = Feeder(server.url, ["train.run1"], make=training)
    train.publish("train.run1", 400)
    code = 'LiveChart("train.run1", fields=["loss", "val_loss"], x="step", title="training loss")'
    state = widget_state(channels=["train.run1"], fields=["loss", "val_loss"], x="step",
                         title="training loss", url=server.url, token=token(publish=[]), height=280)
    page2 = page.context.new_page()
    page2.set_viewport_size({"width": 1040, "height": 470})
    open_widget(page2, page_server.url, state, code=code)
    wait_live(page2, "train.run1", 400)
    page2.screenshot(path=str(out / "widget.png"))
    # The same widget in JupyterLab's dark theme (not kept; looked at by hand).
    page3 = page.context.new_page()
    page3.set_viewport_size({"width": 1040, "height": 470})
    open_widget(page3, page_server.url, state, code=code, css_vars=DARK_VARS)
    wait_live(page3, "train.run1", 400)
    assert page3.locator(".pulseboard-chart").get_attribute("data-theme") == "dark"
    assert page2.locator(".pulseboard-chart").get_attribute("data-theme") == "light"
    page3.screenshot(path=str(tmp_path / "widget-dark.png"))
    print("screenshots in", out, "and", tmp_path)
    for name in ("dashboard.png", "widget.png"):
        assert (out / name).stat().st_size > 10_000


def test_a_new_run_on_a_step_axis_replaces_the_old_one(
    page_server: PageServer, page: Any, server: ServerProcess
) -> None:
    """Two runs on one channel with x="step": the chart shows the newer run, not a zigzag."""
    import httpx

    auth = {"Authorization": f"Bearer {token()}"}
    run1 = [{"ch": "train.x", "data": {"step": s, "loss": 1.0 / (s + 1)}} for s in range(20)]
    run2 = [{"ch": "train.x", "data": {"step": s, "loss": 2.0 / (s + 1)}} for s in range(10)]
    httpx.post(server.url + "/publish", json=run1 + run2, headers=auth).raise_for_status()
    state = widget_state(channels=["train.x"], fields=["loss"], x="step", url=server.url,
                         token=token(publish=[]))
    open_widget(page, page_server.url, state)
    held = wait_until(lambda: (s := chart_state(page, "train.x"))["seqs"] and s["seqs"][-1] == 30 and s,
                      what="both runs replayed")
    assert held["seqs"] == list(range(21, 31))  # only the second run
    httpx.post(server.url + "/publish", json=[{"ch": "train.x", "data": {"step": 10, "loss": 0.1}}],
               headers=auth).raise_for_status()
    wait_until(lambda: chart_state(page, "train.x")["seqs"] == list(range(21, 32)), what="the run to go on")


def test_chromium_negotiates_shared_deflate_and_backfill_arrives_whole(page: Any, server: ServerProcess) -> None:
    """Chromium's own deflate offer: the server answers without context takeover, and a
    backfill of 500-envelope frames (sent compressed) and live frames (sent plain) chart whole."""
    from harness.ws import publish

    handshakes: list[dict[str, Any]] = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.webSocketHandshakeResponseReceived", lambda e: handshakes.append(e["response"]["headers"]))
    cdp.send("Network.enable")
    publish(server, CH, 1000, field="loss")
    open_dashboard(page, server, CH)
    wait_live(page, CH, 1000)
    publish(server, CH, 5, start=1000, field="loss")
    wait_until(lambda: chart_state(page, CH)["seqs"][-1:] == [1005], what="live points after the backfill")
    state = chart_state(page, CH)
    assert state["transport"] == "ws"
    assert_contiguous(state["seqs"])
    ext = {k.lower(): v for h in handshakes for k, v in h.items()}.get("sec-websocket-extensions", "")
    assert "permessage-deflate" in ext and "server_no_context_takeover" in ext, handshakes
