"""The widget's token in the browser: from kernel messages only, and a clear word when no
kernel answers (a saved notebook opened without its kernel)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.browsers import HOOK, Feeder, PageServer, chart_state, open_widget, widget_state
from harness.servers import ServerProcess, free_port, wait_until
from harness.tokens import token

pytestmark = pytest.mark.browser
CH = "sys.kt"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def test_with_no_kernel_answering_the_chart_says_so(page_server: PageServer, page: Any, server: ServerProcess) -> None:
    # A server and a saved snapshot, but no kernel to hand out a token (the stand-in model holds none).
    snap = {"v": 1, "series": [{"ch": CH, "field": "v"}], "x": [1_700_000_000.0 + i for i in range(20)],
            "y": [[float(i) for i in range(20)]]}
    open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, snapshot=snap))
    message = page.locator(".pulseboard-message")
    message.wait_for(timeout=30_000)
    assert "no kernel answered" in message.inner_text()
    assert page.locator(".pulseboard-chart").get_attribute("data-status") == "offline"
    assert page.evaluate(HOOK, CH)["points"] == 20  # the saved snapshot is still shown
    asked = page.evaluate("model.sent.filter((m) => m.type === 'token-request').length")
    assert asked >= 2  # it kept asking before giving up
    assert "token" not in page.evaluate("Object.keys(model.state)")


def test_the_token_comes_in_a_message_and_the_chart_goes_live(
    page_server: PageServer, page: Any, server: ServerProcess
) -> None:
    feed = Feeder(server.url, [CH], 20.0).start()
    try:
        open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, token=token(publish=[])))
        wait_until(lambda: (s := chart_state(page, CH))["status"] == "live" and s["points"] >= 3, timeout=30,
                   what="the chart live")
        assert page.evaluate("model.sent[0].type") == "token-request"
        assert "token" not in page.evaluate("Object.keys(model.state)")
    finally:
        feed.stop()


def test_a_failed_view_token_is_shown_and_the_full_token_stays_in_the_kernel(
    page_server: PageServer, page: Any
) -> None:
    from pulseboard import LiveChart

    full = token(sub="caller", read=["*"], publish=["*"])
    dead = f"http://127.0.0.1:{free_port()}"  # view-token can't be asked: no fallback to `full`
    chart = LiveChart(CH, url=dead, token=full)
    try:
        problem, held = chart.problem, chart._tokens.token
    finally:
        chart.close()
    assert held == ""
    open_widget(page, page_server.url, widget_state(channels=[CH], url=chart.url, problem=problem, token=held))
    message = page.locator(".pulseboard-message")
    message.wait_for(timeout=30_000)
    shown = message.inner_text()
    assert "cannot get a read-only token for the browser" in shown
    assert "does not fall back to your full token" in shown
    assert page.locator(".pulseboard-chart").get_attribute("data-status") == "offline"
    page.screenshot(path="/work/wt/shots/trust-edges-view-token-fails-closed.png")
    assert full not in page.content()


def test_an_expired_token_is_named_on_the_chart_until_a_fresh_one_comes(
    page_server: PageServer, page: Any, server: ServerProcess
) -> None:
    # The kernel can only hand out an expired token (a long run whose token ran out): the status
    # line says so instead of "connecting"; a fresh token from the kernel brings the chart live.
    feed = Feeder(server.url, [CH], 20.0).start()
    try:
        open_widget(page, page_server.url, widget_state(channels=[CH], url=server.url, token=token(ttl=-60)))
        status = page.locator(".pulseboard-status")
        wait_until(lambda: "token expired" in status.inner_text(), timeout=30, what="'token expired' on the chart")
        assert not status.inner_text().startswith("connecting")
        assert page.locator(".pulseboard-chart").get_attribute("data-status") == "connecting"
        page.evaluate("(t) => model.set('token', t)", token(publish=[]))
        wait_until(lambda: chart_state(page, CH)["status"] == "live", timeout=30, what="the chart live")
        wait_until(lambda: status.inner_text().startswith("live"), timeout=10, what="'live' on the status line")
        assert "token expired" not in status.inner_text()
    finally:
        feed.stop()
