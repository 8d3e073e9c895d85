"""Half-open connections (a peer gone without FIN or RST) and handshakes cut short.

- WebSocket: the server pings every `--ping-interval` (10 s by default, 1 s here) and drops a peer that has not
  answered within as long again, so a black-holed WebSocket is closed within 20 s.
- SSE: the server sends a `: ping` comment whenever the stream was quiet for the heartbeat
  period (15 s; the hidden `--heartbeat` knob shortens it here). A client that hears nothing
  for two heartbeats knows the path is dead, reconnects with Last-Event-ID and misses nothing.
  On the server, the black-holed stream is released at the latest when its token expires.
- Long-poll: a waiting poll ends at the poll timeout (25 s; `--poll-timeout` here) whatever
  happened to its client; the client polls again with its last cursor.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from faultproxy import FaultProxy
from faultsupport import auth, until
from websockets.asyncio.client import connect

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard.client import Client
from pulseboard.protocol import SUBPROTOCOL

PING_INTERVAL = 1.0  # the server's --ping-interval in this test (default 10 s, docs/protocol.md)


def connections(server: ServerProcess, transport: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    m = re.search(rf'^pulseboard_connections{{transport="{transport}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_a_half_open_websocket_is_dropped_by_the_server_pings(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--broker", "memory://", "--ping-interval", str(PING_INTERVAL))
    proxy = await FaultProxy(server.port).start()
    try:
        ws = await connect(proxy.url.replace("http", "ws") + "/ws", subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                           additional_headers=auth(token()), ping_interval=None)
        await ws.send(json.dumps({"op": "subscribe", "ch": {"h": None}}))
        while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("op") != "subscribed":
            pass
        assert await asyncio.to_thread(connections, server, "ws") == 1
        (link,) = proxy.links
        proxy.blackhole(link)  # from now on neither side hears anything, and nothing is closed
        t0 = time.monotonic()
        documented = 2 * PING_INTERVAL  # a ping, then as long again for its pong
        await until(lambda: connections(server, "ws") == 0, documented + 10, what="the server to drop the peer")
        print(f"half-open WebSocket dropped after {time.monotonic() - t0:.1f} s (documented bound {documented} s)")
        proxy.release(link)
        await ws.close()
    finally:
        await proxy.close()


async def sse_lines(http: httpx.AsyncClient, url: str, headers: dict[str, str], out: list[str],
                    stop: Callable[[list[str]], bool]) -> None:
    """Read an event stream's raw lines into `out` until `stop(out)` (or the read timeout)."""
    async with http.stream("GET", url, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            out.append(line)
            if stop(out):
                return


def seqs(lines: list[str]) -> list[int]:
    return [e["seq"] for line in lines if line.startswith("data: [") for e in json.loads(line[6:])]


def events(lines: list[str]) -> list[tuple[str, Any]]:
    """(event name, decoded data) of each complete event."""
    out, name, data = [], "message", ""
    for line in lines:
        if not line:
            if data:
                out.append((name, json.loads(data)))
            name, data = "message", ""
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return out


def last_id(lines: list[str]) -> str:
    return [line[4:] for line in lines if line.startswith("id: ")][-1]


async def test_a_half_open_sse_stream_is_found_by_heartbeats_and_resumed_exactly(
    server_factory: Callable[..., ServerProcess],
) -> None:
    heartbeat = 1.0
    server = server_factory("--broker", "memory://", "--heartbeat", str(heartbeat))
    proxy = await FaultProxy(server.port).start()
    ttl = 15
    short = token(ttl=ttl)  # the stale stream's token: the server lets the stream go when it expires
    dead_after = 2 * heartbeat  # the client's rule: two heartbeats of silence mean a dead path
    timeout = httpx.Timeout(10, read=dead_after)
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout) as http, \
                httpx.AsyncClient(timeout=10, headers=auth(token())) as pub:
            lines: list[str] = []
            reading = asyncio.create_task(sse_lines(http, proxy.url + "/sse?ch=h", auth(short), lines,
                                                    lambda _: False))
            # an idle stream is never silent for two heartbeats: three pings arrive, no read timeout
            await until(lambda: lines.count(": ping") >= 3 or reading.done(), 30, what="three heartbeats")
            assert not reading.done(), reading
            r = await pub.post(server.url + "/publish", json=[{"ch": "h", "data": {"i": i}} for i in range(5)])
            r.raise_for_status()
            await until(lambda: seqs(lines) == [1, 2, 3, 4, 5], 15, what="the first five messages")
            (link,) = proxy.live()
            proxy.blackhole(link)
            r = await pub.post(server.url + "/publish", json=[{"ch": "h", "data": {"i": i}} for i in range(5, 10)])
            r.raise_for_status()
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(reading, 30)
                raise AssertionError("the stream ended instead of falling silent")
            except httpx.ReadTimeout:
                found = time.monotonic() - t0
            print(f"half-open SSE found by the client after {found:.1f} s of silence (heartbeat {heartbeat} s)")
            assert seqs(lines) == [1, 2, 3, 4, 5]  # nothing got through the black hole
            again: list[str] = []
            await sse_lines(http, proxy.url + "/sse?ch=h", {**auth(token()), "Last-Event-ID": last_id(lines)},
                            again, lambda out: len(seqs(out)) >= 5)
            assert seqs(again) == [6, 7, 8, 9, 10]
            subs = [data for name, data in events(again) if name == "subscribed"]
            assert subs and all(op["recovered"] is True for op in subs), subs
            # the server never heard of the black hole: it lets the stale stream go when its token expires
            left = ttl - (time.monotonic() - started)
            await until(lambda: connections(server, "sse") == 0, left + 10, what="the stale stream to be released")
            proxy.release(link)
    finally:
        await proxy.close()


async def test_the_reference_client_survives_a_handshake_cut_short(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A connection cut in the middle of the HTTP upgrade answer is retried like any other loss."""
    server = server_factory("--broker", "memory://")
    proxy = await FaultProxy(server.port).start()
    first: list[Any] = []

    def slow_first(link: Any) -> None:
        if not first:
            first.append(link)
            proxy.slow(link, chunk=20, delay=0.05)  # the upgrade answer trickles in

    proxy.on_accept = slow_first
    client = Client(["hs"], url=proxy.url, token=token())
    try:
        client.start()
        await until(lambda: first and first[0].bytes_down >= 40, 15, what="part of the upgrade answer")
        proxy.cut(first[0])
        await asyncio.wait_for(client.wait_connected(), 15)  # the second attempt goes through
        assert client._task is not None and not client._task.done()
        assert proxy.accepted == 2
    finally:
        await client.close()
        await proxy.close()


async def test_a_half_open_long_poll_ends_with_the_poll_timeout_and_resumes_exactly(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A waiting poll whose client vanished is answered (into the void) at the poll timeout and
    released; the client, whose read deadline is the poll timeout plus a margin, polls again with
    its last cursor and misses nothing published meanwhile."""
    poll_timeout = 2.0
    server = server_factory("--broker", "memory://", "--poll-timeout", str(poll_timeout))
    proxy = await FaultProxy(server.port).start()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=poll_timeout + 3), headers=auth(token())) as http, \
                httpx.AsyncClient(timeout=10, headers=auth(token())) as pub:
            first = (await http.get(proxy.url + "/poll?ch=hp")).json()
            waiting = asyncio.create_task(http.get(proxy.url + "/poll?ch=hp&cursor=" + first["cursor"]))
            await until(lambda: connections(server, "poll") == 1, 15, what="the poll to wait")
            (link,) = proxy.live()
            proxy.blackhole(link)
            # the poll timeout ends the wait: the empty answer goes into the black hole, the poll is released
            await until(lambda: connections(server, "poll") == 0, poll_timeout + 10, what="the poll to be released")
            r = await pub.post(server.url + "/publish", json=[{"ch": "hp", "data": {"i": i}} for i in range(3)])
            r.raise_for_status()
            try:
                await asyncio.wait_for(waiting, 30)
                raise AssertionError("an answer came through the black hole")
            except httpx.ReadTimeout:
                pass
            again = (await http.get(proxy.url + "/poll?ch=hp&cursor=" + first["cursor"])).json()
            assert [e["seq"] for e in again["msgs"]] == [1, 2, 3]
            proxy.release(link)
    finally:
        await proxy.close()
