"""The kernel relay against a real server, without a browser: what it sends the browser.

The relay's `send` is where the widget's comm would be; each test reads the messages it got
as the browser's adapter does (the frames in `text`).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from harness.servers import ServerProcess, wait_until
from harness.tokens import token
from pulseboard.publish import publish
from pulseboard.relay import Relay

pytestmark = pytest.mark.process


class Browser:
    """What a relayed chart's browser would receive: the frames, in order."""

    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.msgs.append(msg)

    def frames(self) -> list[Any]:
        with self.lock:
            return [f for m in self.msgs if m["type"] == "relay" for f in json.loads(m["text"])]

    def seqs(self, ch: str) -> list[int]:
        return [e["seq"] for f in self.frames() if isinstance(f, list) for e in f if e["ch"] == ch]

    def ops(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames() if isinstance(f, dict) and f.get("op") == kind]


def relay_for(server: ServerProcess, browser: Browser, tok: Callable[[], str]) -> Relay:
    return Relay(browser.send, lambda: (server.url, tok()), tok)


def connections(server: ServerProcess) -> int:
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
        n: int = json.loads(r.read())["connections"]
        return n


def pub(server: ServerProcess, ch: str, n: int) -> None:
    for i in range(n):
        publish(ch, {"v": i}, url=server.url, token=token("feeder"))


def test_relay_resumes_from_the_browsers_position_and_stops_on_close(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    pub(server, "relay.a", 10)
    browser = Browser()
    relay = relay_for(server, browser, lambda: token("view", read=["relay.a"], publish=[]))
    epoch = json.loads(urllib.request.urlopen(urllib.request.Request(
        server.url + "/history?ch=relay.a&since=0&limit=1",
        headers={"Authorization": f"Bearer {token()}"})).read())["epoch"]
    relay.start({"relay.a": {"since": 4, "epoch": epoch}}, view="v1")
    wait_until(lambda: browser.seqs("relay.a") == list(range(5, 11)), what="the replay after seq 4")
    (sub,) = browser.ops("subscribed")
    assert sub["recovered"] is True
    pub(server, "relay.a", 3)
    wait_until(lambda: browser.seqs("relay.a") == list(range(5, 14)), what="live messages")
    assert connections(server) == 1
    relay.close()
    wait_until(lambda: connections(server) == 0, what="the relay's connection to close")


@pytest.mark.parametrize("broker", ["", "memory://"])
def test_server_restart_resumes_exactly_on_the_store_and_says_gap_on_memory(
    server_factory: Callable[..., ServerProcess], broker: str,
) -> None:
    args = ("--broker", broker) if broker else ()
    server = server_factory(*args)
    browser = Browser()
    relay = relay_for(server, browser, lambda: token("view", read=["relay.*"], publish=[]))
    relay.start({"relay.r": {"backfill": 100}}, view="v1")
    pub(server, "relay.r", 5)
    wait_until(lambda: browser.seqs("relay.r") == [1, 2, 3, 4, 5], what="the first five")
    server.terminate()
    server.start()
    pub(server, "relay.r", 3)
    try:
        if not broker:  # the durable store: numbering goes on, nothing missing
            wait_until(lambda: browser.seqs("relay.r") == list(range(1, 9)), timeout=40, what="1..8 exactly")
            assert all(op["recovered"] for op in browser.ops("subscribed"))
            assert browser.ops("reset") == []
        else:  # memory: numbering restarted, which the browser is told (it draws a gap)
            wait_until(lambda: len(browser.ops("subscribed")) >= 2, timeout=40, what="the resubscribe")
            again = browser.ops("subscribed")[-1]
            assert again["epoch"] != browser.ops("subscribed")[0]["epoch"] or again["recovered"] is False
    finally:
        relay.close()


def test_token_is_refreshed_while_relaying(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    browser = Browser()
    # Each token lives 4 s; the relay asks for the current one when it refreshes.
    relay = relay_for(server, browser, lambda: token("view", read=["relay.t"], publish=[], ttl=4))
    relay.start({"relay.t": None}, view="v1")
    wait_until(lambda: browser.ops("subscribed"), what="the subscription")
    stop = threading.Event()
    sent: list[int] = []

    def feed() -> None:
        while not stop.is_set():
            sent.append(publish("relay.t", {"v": 1}, url=server.url, token=token("feeder")))
            stop.wait(0.2)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        stop.wait(10)  # well past the first token's life
    finally:
        stop.set()
        t.join(10)
    try:
        wait_until(lambda: browser.seqs("relay.t")[-1:] == sent[-1:], what="the last message")
        assert browser.seqs("relay.t") == sent
        assert not [m for m in browser.msgs if m["type"] == "relay-end"]
    finally:
        relay.close()


def test_a_channel_the_token_cant_read_ends_the_relay_with_the_servers_word(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    browser = Browser()
    relay = relay_for(server, browser, lambda: token("view", read=["relay.mine"], publish=[]))
    relay.start({"relay.secret": None}, view="v1")
    wait_until(lambda: [m for m in browser.msgs if m["type"] == "relay-end"], what="the relay to end")
    assert browser.ops("error")[0]["code"] == "forbidden"
    assert browser.seqs("relay.secret") == []
