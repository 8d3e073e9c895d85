"""The widget's token in the browser: from kernel messages only, and a clear word when no
kernel answers (a saved notebook opened without its kernel)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.browsers import HOOK, Feeder, PageServer, chart_state, open_widget, widget_state
from harness.servers import ServerProcess, wait_until
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
