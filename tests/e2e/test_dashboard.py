"""The standalone dashboard in chromium against real `pulseboard serve` processes."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_support import Feeder, assert_contiguous, chart_state
from support import ROOT, RedisProcess, ServerProcess, token, wait_until

pytestmark = pytest.mark.browser
CH = "sys.test"
REDIS_BROKER = ROOT / "server" / "pulseboard_server" / "brokers" / "redis.py"


def open_dashboard(page: Any, server: ServerProcess, *channels: str, base: str = "/") -> None:
    frag = f"token={token(sub='viewer', read=['*'], publish=[])}" + "".join(f"&ch={c}" for c in channels)
    page.goto(f"{server.url}{base}#{frag}")


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
    server = server_factory("--base-path", "/pb/board", start=False).start(wait=False)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(server.url + "/pb/board/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(ready, 20, what="server under /pb/board to answer")
    feeder(server.url + "/pb/board", [CH])
    open_dashboard(page, server, CH, base="/pb/board/")
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
    server = server_factory()
    feed = feeder(server.url, [CH])
    restart_and_check(page, server, lambda: server_factory(port=server.port), feed, same_epoch=False)


@pytest.mark.redis
def test_server_restart_on_the_same_port_redis_broker(
    page: Any, server_factory: Callable[..., ServerProcess], redis_server: RedisProcess,
    feeder: Callable[..., Feeder],
) -> None:
    if not REDIS_BROKER.exists():
        pytest.skip("no redis broker yet")
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


def test_screenshot(page: Any, server: ServerProcess, feeder: Callable[..., Feeder]) -> None:
    feeder(server.url, ["sys.demo"], hz=10)
    open_dashboard(page, server, "sys.demo")
    wait_live(page, "sys.demo", 40)
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "dashboard.png"))
    assert Path(out / "dashboard.png").stat().st_size > 5000
