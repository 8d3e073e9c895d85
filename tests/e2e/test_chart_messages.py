"""What the chart says, on screen, when it shows nothing for a reason the person can fix: no
server at the URL (and it keeps trying), a channel with no data (a typo), a field the
messages do not carry. Read from the painted message and status line, as a person reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.browsers import PageServer, open_widget, widget_state
from harness.charts import VIEW, publish
from harness.servers import ServerProcess, free_port, wait_until

pytestmark = pytest.mark.browser


def message(page: Any) -> str:
    el = page.locator(".pulseboard-message")
    return str(el.inner_text()) if el.is_visible() else ""


def status(page: Any) -> str:
    return str(page.locator(".pulseboard-chart").get_attribute("data-status"))


def steps(ch: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"ch": ch, "data": {"loss": 1 / (i + 1), "step": i}} for i in range(start, start + n)]


def test_no_server_says_cannot_reach_and_goes_live_when_it_comes(
    page: Any, page_server: PageServer, server_factory: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    open_widget(page, page_server.url, widget_state(channels=["train.run1"], fields=["loss"], x="step",
                                                    url=url, token=VIEW))
    said = wait_until(lambda: message(page), timeout=30, what="a message on the chart")
    assert said.startswith(f"cannot reach {url}/: ") and "retrying" in said
    assert status(page) == "connecting"
    # It keeps trying: a server that appears at that address is found, and the message goes.
    server = server_factory("--broker", "memory://", port=port)
    publish(server.url, steps("train.run1", 5))
    wait_until(lambda: status(page) == "live" and not message(page), timeout=60,
               what="the chart live, its message gone")


def test_a_channel_with_no_data_names_readable_ones_like_it_then_goes_live(
    page: Any, page_server: PageServer, server: ServerProcess
) -> None:
    publish(server.url, steps("train.run1", 20) + steps("sys.other", 1))
    open_widget(page, page_server.url, widget_state(channels=["train.rn1"], fields=["loss"], x="step",
                                                    url=server.url, token=VIEW))
    said = wait_until(lambda: message(page), timeout=30, what="a message on the chart")
    assert said == "no data yet on train.rn1; readable channels like it: train.run1"
    publish(server.url, steps("train.rn1", 3))
    wait_until(lambda: not message(page), timeout=30, what="the message to go when data comes")
    wait_until(lambda: page.locator(".pulseboard-chart").get_attribute("data-points") not in (None, "0"),
               timeout=30, what="the points to be counted on the chart")


def test_a_missing_field_says_which_fields_exist(page: Any, page_server: PageServer, server: ServerProcess) -> None:
    publish(server.url, steps("train.run1", 20))
    open_widget(page, page_server.url, widget_state(channels=["train.run1"], fields=["los"], x="step",
                                                    url=server.url, token=VIEW))
    said = wait_until(lambda: message(page), timeout=30, what="a message on the chart")
    assert said == "no field los on train.run1 yet; its fields: loss, step"


def test_a_field_that_holds_text_says_so_and_names_the_numeric_ones(
    page: Any, page_server: PageServer, server: ServerProcess
) -> None:
    # A newcomer logs {"acc": "high"} or asks for a field that only ever held text: the chart
    # stayed empty (its time axis at 1/1/70) with no word why.
    publish(server.url, [{"ch": "train.s", "data": {"loss": 1 / (i + 1), "acc": "high", "step": i}} for i in range(5)])
    open_widget(page, page_server.url, widget_state(channels=["train.s"], fields=["acc"], x="step",
                                                    url=server.url, token=VIEW))
    said = wait_until(lambda: message(page), timeout=30, what="a message on the chart")
    assert said == "field acc has no numbers on train.s yet (text or null values); numeric fields: loss, step"
    page.locator(".pulseboard-chart").screenshot(path="/work/wt/shots/first-hour-text-field-message.png")
    publish(server.url, [{"ch": "train.s", "data": {"acc": 0.5, "step": 5}}])
    wait_until(lambda: not message(page), timeout=30, what="the message to go once acc holds a number")
