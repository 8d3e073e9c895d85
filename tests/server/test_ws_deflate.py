"""permessage-deflate as browsers offer it: frames intact and in order, compressed once per frame."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import httpx

from harness.servers import ServerProcess
from harness.tokens import token
from harness.ws import WireClient, publish
from pulseboard_server.fanout import DEFLATE_MIN, FrameCache


def points(ch: str, n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"ch": ch, "data": {"step": i, "loss": 1.0 / (i + 1)}} for i in range(start, start + n)]


def post(srv: ServerProcess, body: list[dict[str, object]]) -> None:
    httpx.post(srv.url + "/publish", json=body, headers={"Authorization": f"Bearer {token()}"},
               timeout=30).raise_for_status()


def subscribe(c: WireClient, ch: dict[str, object]) -> None:
    c.send_text(json.dumps({"op": "subscribe", "ch": ch}))
    for _ in ch:
        c.recv_op("subscribed")


def test_chromium_offer_gets_backfill_compressed_and_live_frames_in_order(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--history", "2000")
    post(server, points("h", 2000))
    c = WireClient(server, deflate=True)
    try:
        ext = c.response.headers["Sec-WebSocket-Extensions"]
        assert "permessage-deflate" in ext and "server_no_context_takeover" in ext
        c.recv_op("welcome")
        subscribe(c, {"h": {"backfill": 2000}})
        got, size = c.recv_envelopes(2000)
        assert [e["seq"] for e in got] == list(range(1, 2001))
        assert [e["data"]["step"] for e in got] == list(range(2000))
        assert c.wire * 4 <= size, (c.wire, size)  # a 2,000-point history, ops and all: >= 4x smaller
        # Live frames after it, small (sent plain) and large (compressed), in order and whole.
        for i in range(20):
            post(server, points("h", 1 if i % 2 else 40, start=2000 + 100 * i))
        live, _ = c.recv_envelopes(10 * 1 + 10 * 40)
        assert [e["seq"] for e in live] == list(range(2001, 2001 + 410))
        want = [s for i in range(20) for s in range(2000 + 100 * i, 2000 + 100 * i + (1 if i % 2 else 40))]
        assert [e["data"]["step"] for e in live] == want
    finally:
        c.close()


def test_client_without_deflate_gets_plain_frames(server: ServerProcess) -> None:
    post(server, points("p", 500))
    c = WireClient(server)
    try:
        assert "Sec-WebSocket-Extensions" not in c.response.headers
        subscribe(c, {"p": {"backfill": 500}})
        got, size = c.recv_envelopes(500)
        assert [e["seq"] for e in got] == list(range(1, 501))
        assert c.wire >= size  # nothing compressed
        publish(server, "p", 3)
        assert [e["seq"] for e in c.recv_envelopes(3)[0]] == [501, 502, 503]
    finally:
        c.close()


def test_shared_compressed_frames_go_only_to_their_clients(server: ServerProcess) -> None:
    """Clients on different channels, and one on both, in the same ticks: each gets its own content."""
    a, b, both, plain = (WireClient(server, deflate=True), WireClient(server, deflate=True),
                         WireClient(server, deflate=True), WireClient(server))
    try:
        subscribe(a, {"a": None})
        subscribe(b, {"b": None})
        subscribe(both, {"a": None, "b": None})
        subscribe(plain, {"a": None})
        for r in range(5):  # one POST per round: both channels land in the same tick
            post(server, points("a", 30, start=1000 * r) + points("b", 30, start=1000 * r + 500))
        ga, gb, gboth, gplain = (a.recv_envelopes(150)[0], b.recv_envelopes(150)[0],
                                 both.recv_envelopes(300)[0], plain.recv_envelopes(150)[0])
        assert {e["ch"] for e in ga} == {"a"} and {e["ch"] for e in gb} == {"b"}
        assert [e["seq"] for e in ga] == list(range(1, 151)) == [e["seq"] for e in gb]
        assert ga == gplain
        assert sorted(gboth, key=lambda e: (e["ch"], e["seq"])) == ga + gb
    finally:
        for c in (a, b, both, plain):
            c.close()


def test_frame_cache_compresses_each_content_once() -> None:
    cache = FrameCache()
    x, y = b"[" + b"1," * DEFLATE_MIN + b"1]", b"[" + b"2," * DEFLATE_MIN + b"2]"
    dx = cache.deflated(x)
    assert cache.deflated(bytes(x)) is dx  # the same content, from another client's frame: shared
    dy = cache.deflated(y)
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(dx + b"\x00\x00\xff\xff") == x
    assert zlib.decompressobj(-15).decompress(dy + b"\x00\x00\xff\xff") == y
