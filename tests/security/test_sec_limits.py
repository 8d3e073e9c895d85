"""Each limit of docs/security.md, hit on a live server (the ones not hit in test_sec_findings)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
import pytest
from sec_support import Canary, scan_log

from harness.servers import ServerProcess, wait_until
from harness.tokens import token
from harness.ws import WireClient, open_ws, publish, recv_op
from pulseboard_server.config import Settings
from pulseboard_server.limits import MAX_JSON_DEPTH, Limits

Factory = Callable[..., ServerProcess]


def auth(sub: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub=sub)}"}


async def test_subscriptions_per_connection(server_factory: Factory) -> None:
    srv = server_factory("--max-subscriptions", "3")
    async with await open_ws(srv) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "subscribe", "ch": {c: None for c in ("a", "b", "c", "d")}}))
        err = await recv_op(ws, "error")
        assert err["code"] == "too_large" and err["ch"] == "d"
        await ws.send(json.dumps({"op": "unsubscribe", "ch": ["a"]}))
        await ws.send(json.dumps({"op": "subscribe", "ch": {"d": None}}))
        while (await recv_op(ws, "subscribed"))["ch"] != "d":
            pass
    r = httpx.get(srv.url + "/sse", params=[("ch", c) for c in "abcd"], headers=auth())
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    r = httpx.get(srv.url + "/poll", params=[("ch", c) for c in "abcd"], headers=auth())
    assert r.status_code == 413


async def test_publish_rate_per_subject(server_factory: Factory) -> None:
    # one message per 10 s refills the bucket: the refusals below can't turn into passes on a slow machine
    srv = server_factory("--publish-rate", "0.1", "--publish-burst", "20")
    batch = [{"ch": "rate", "data": {"i": i}} for i in range(20)]
    assert httpx.post(srv.url + "/publish", json=batch, headers=auth("fast")).status_code == 200
    r = httpx.post(srv.url + "/publish", json=batch[:5], headers=auth("fast"))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    async with await open_ws(srv, token(sub="fast")) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "publish", "ch": "rate", "data": {"x": 1}, "id": 9}))
        err = await recv_op(ws, "error")
        assert err["code"] == "rate_limited" and err["id"] == 9
    # other subjects are not slowed down; the limited one gets through again once refilled
    assert httpx.post(srv.url + "/publish", json=batch[:5], headers=auth("calm")).status_code == 200
    wait_until(lambda: httpx.post(srv.url + "/publish", json=batch[:1], headers=auth("fast")).status_code == 200,
               timeout=30, interval=0.25, what="the bucket to refill")
    history = httpx.get(srv.url + "/history?ch=rate&limit=100", headers=auth()).json()
    assert history["seq"] == 26  # 20 + 5 + 1: nothing refused was numbered
    scan_log(srv, [])


def test_publish_rate_bucket_is_bounded() -> None:
    """The per-subject table stays bounded however many subjects publish."""
    now = [0.0]
    limits = Limits(Settings(publish_rate=10, publish_burst=10), clock=lambda: now[0])
    for i in range(25_000):
        limits.take_publish(f"s{i}")
        now[0] += 1.0  # every earlier bucket has refilled: it is dropped first
    assert len(limits._buckets) <= 10_001


def test_body_read_timeout(server_factory: Factory) -> None:
    srv = server_factory("--body-timeout", "1")
    head = (f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token()}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(head.encode() + b'{"ch": "a", ')  # and never the rest
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"error":"bad_request"' in answer


def test_body_size_and_depth(server: ServerProcess) -> None:
    chunks = (b'{"ch": "a", "data": {"pad": "' + b"x" * 65536 for _ in range(20))
    r = httpx.post(server.url + "/publish", content=chunks, headers=auth())  # chunked: no Content-Length
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    def nested(depth: int) -> str:  # the body object is the first level; `x` is ignored
        return '{"x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    r = httpx.post(server.url + "/ticket", content=nested(MAX_JSON_DEPTH), headers=auth())
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/ticket", content=nested(MAX_JSON_DEPTH + 1), headers=auth())
    assert r.status_code == 400 and "nested" in r.json()["detail"]
    data = '{"ch": "a", "data": {"x": ' + "[" * 33 + "]" * 33 + "}}"  # 33 levels below `data`
    r = httpx.post(server.url + "/publish", content=data, headers=auth())
    assert r.status_code == 400 and "nested" in r.json()["detail"]


async def test_frame_size(server_factory: Factory) -> None:
    srv = server_factory("--max-message-size", "1000")
    async with await open_ws(srv) as ws:
        await recv_op(ws, "welcome")
        await ws.send(json.dumps({"op": "ping", "pad": "x" * 2000}))
        assert (await recv_op(ws, "error"))["code"] == "too_large"
        await ws.send(json.dumps({"op": "ping"}))
        await recv_op(ws, "pong")


# Frames that end the connection, the worst the long fuzzing drew: data keys of huge astral
# text (each character escaped by JSON as a surrogate pair, 12 bytes), lone surrogates, a
# compressed frame that inflates past the limit, text that isn't UTF-8. Each is followed by
# more ops, as a client that doesn't wait would send them.
BIG = 1 << 16  # --max-message-size 1000: frames over max(4 x 1000, 64 KiB) close with 1009
ASTRAL = json.dumps({"op": "publish", "ch": "fz.a", "data": {"\U0001f600" * 100_000: 1, "\ud83d" * 9: 2}}).encode()
LONE = json.dumps({"op": "publish", "ch": "fz.a", "data": {"\udc00" * 200_000: 1}}).encode()
FAILING = [
    pytest.param(ASTRAL, False, 1009, f"exceeds limit of {BIG} bytes", id="astral-keys"),
    pytest.param(LONE, False, 1009, f"exceeds limit of {BIG} bytes", id="lone-surrogate-keys"),
    pytest.param(ASTRAL, True, 1009, f"exceeds limit of {BIG} bytes", id="astral-keys-deflated"),  # ~14 KiB sent
    pytest.param(b'{"op": "ping", "x": "\xed\xb0\x80"}' + b"x" * 60_000, False, 1007, "", id="not-utf8"),
]


@pytest.mark.parametrize(("frame", "deflate", "code", "reason"), FAILING)
def test_a_frame_that_ends_the_connection_gets_its_close_frame(server_factory: Factory, frame: bytes, deflate: bool,
                                                               code: int, reason: str) -> None:
    """The close frame is on the wire, then the server's FIN: never a reset. The server used to
    close its socket right after the close frame, with the client's bytes still arriving, and
    the kernel reset the connection: the client's send failed and a websockets client dropped
    the connection without reading the close frame (seen once in the long fuzzing)."""
    srv = server_factory("--max-message-size", "1000")
    used: list[str] = []
    canary = Canary(srv, used)  # another connection, subscribed all along
    c = WireClient(srv, deflate=deflate)
    c.recv_op("welcome")
    c.send_whole(frame)  # the server takes the whole frame (and drops it) ...
    c.send_whole(b'{"op": "ping"}')  # ... and what follows it
    got, why = c.read_close()
    assert got == code and reason in why, (got, why)
    c.close()
    canary.check()
    canary.ws.close()
    scan_log(srv, used)


def test_a_frame_over_the_message_limit_leaves_the_connection_and_its_channels(server_factory: Factory) -> None:
    """Between the message limit and 4x it: an `error` op, and the connection's subscription goes on."""
    srv = server_factory("--max-message-size", "100000")
    c = WireClient(srv, deflate=True)
    c.recv_op("welcome")
    c.send_text(json.dumps({"op": "subscribe", "ch": {"fz.b": None}}))
    c.recv_op("subscribed")
    c.send_text(json.dumps({"op": "publish", "ch": "fz.a", "data": {"\U0001f600" * 20_000: 1}, "id": 1}))
    err = c.recv_op("error")
    assert err["code"] == "too_large" and "100000-byte limit" in err["detail"], err
    publish(srv, "fz.b", 1)
    got, _ = c.recv_envelopes(1)
    assert got[0]["ch"] == "fz.b" and got[0]["seq"] == 1
    c.close()
    scan_log(srv, [])
