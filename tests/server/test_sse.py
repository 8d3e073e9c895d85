"""GET sse against a real server, read with httpx-sse (a standard client library, not ours)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from harness.channels import metric
from harness.servers import RedisProcess, ServerProcess, wait_until
from harness.tokens import auth, token
from pulseboard.protocol import decode_cursor, encode_cursor

Headers = dict[str, str]



async def post(client: httpx.AsyncClient, server: ServerProcess, body: Any) -> list[int]:
    r = await client.post(server.url + "/publish", json=body, headers=auth())
    r.raise_for_status()
    seqs: list[int] = r.json()["seqs"]
    return seqs



async def read_events(
    client: httpx.AsyncClient, url: str, headers: Headers, until: Callable[[list[ServerSentEvent]], bool],
    timeout: float = 15.0, opened: asyncio.Event | None = None,
) -> list[ServerSentEvent]:
    """Events of one connection until `until(events)` holds (or the stream ends).

    `opened` is set once every channel's `subscribed` event has arrived.
    """
    out: list[ServerSentEvent] = []
    channels = url.count("ch=")

    async def run() -> None:
        async with aconnect_sse(client, "GET", url, headers=headers) as source:
            source.response.raise_for_status()
            async for ev in source.aiter_sse():
                out.append(ev)
                if opened is not None and len(named(out, "subscribed")) == channels:
                    opened.set()
                if until(out):
                    return

    await asyncio.wait_for(run(), timeout)
    return out


def data_of(ev: ServerSentEvent) -> Any:
    assert ev.data, f"event without data: {ev!r}"
    return json.loads(ev.data)


def envelopes(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [e for ev in events if ev.event == "message" for e in data_of(ev)]


def named(events: list[ServerSentEvent], name: str) -> list[dict[str, Any]]:
    return [data_of(ev) for ev in events if ev.event == name]


# --- exactly once across cuts ------------------------------------------------------------------


async def test_sse_resume_is_exact_across_20_random_cuts(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """2,000 messages on two channels; the stream is cut at 20 random points and resumed
    with Last-Event-ID each time; the combined stream has every message once, in order."""
    server = server_factory("--history", "5000")
    rng = random.Random()
    seed = int(os.environ.get("PULSEBOARD_TEST_SEED") or rng.randrange(1 << 30))  # to replay a failure
    rng.seed(seed)
    total, channels = 2000, ("t.a", "t.b")
    cuts = sorted(rng.sample(range(1, total), 20))
    received: list[dict[str, Any]] = []
    progress = asyncio.Condition()
    connections, recovered, ids = 0, [], []
    url = server.url + "/sse?" + "&".join(f"ch={c}" for c in channels)
    published: dict[str, list[int]] = {ch: [] for ch in channels}

    async def publisher(client: httpx.AsyncClient) -> None:
        sent = [0]
        while sent[0] < total:
            async with progress:  # keep at most ~150 messages ahead of the reader
                await progress.wait_for(lambda: sent[0] - len(received) < 150)
            n = min(rng.randint(1, 12), total - sent[0])
            picks = [(rng.choice(channels), i) for i in range(sent[0], sent[0] + n)]
            await post(client, server, [{"ch": ch, "data": {"i": i}} for ch, i in picks])
            for ch, i in picks:
                published[ch].append(i)
            sent[0] += n

    async def reader(client: httpx.AsyncClient, started: asyncio.Event) -> None:
        nonlocal connections
        last_id: str | None = None
        resume_after_cut = False
        while len(received) < total or cuts or resume_after_cut:  # every cut is followed by a resume
            resume_after_cut = False
            headers = auth()
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            connections += 1
            subscribed = 0
            async with aconnect_sse(client, "GET", url, headers=headers) as source:
                assert source.response.status_code == 200
                async for ev in source.aiter_sse():
                    assert ev.id, f"event without an id: {ev}"
                    ids.append(ev.id)
                    if ev.event == "subscribed":
                        recovered.append(json.loads(ev.data)["recovered"])
                        subscribed += 1
                        started.set()
                    elif ev.event == "message":
                        batch = json.loads(ev.data)
                        async with progress:
                            received.extend(batch)
                            progress.notify_all()
                        pos = decode_cursor(ev.id)
                        for env in batch:  # the id holds the position after this event
                            assert pos[env["ch"]][1] >= env["seq"]
                    else:
                        raise AssertionError(f"unexpected event {ev.event}: {ev.data}")
                    last_id = ev.id
                    if subscribed < len(channels):
                        continue
                    if cuts and len(received) >= cuts[0]:
                        cuts.pop(0)
                        resume_after_cut = True
                        break  # leaving the block closes the connection: a cut
                    if not cuts and len(received) >= total:
                        break

    async with httpx.AsyncClient(timeout=30) as client:
        started = asyncio.Event()
        read = asyncio.create_task(reader(client, started))
        await asyncio.wait_for(started.wait(), 15)
        await asyncio.wait_for(asyncio.gather(publisher(client), read), 120)

    assert connections == 21, f"seed {seed}"
    assert recovered == [True] * (2 * connections), f"seed {seed}"
    assert len(received) == total, f"seed {seed}"
    for ch in channels:  # within a channel: every message once, in publishing order
        mine = [e for e in received if e["ch"] == ch]
        assert [e["data"]["i"] for e in mine] == published[ch], f"seed {seed}"
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1)), f"seed {seed}"
    final = decode_cursor(ids[-1])
    assert {ch: final[ch][1] for ch in channels} == {
        ch: sum(1 for e in received if e["ch"] == ch) for ch in channels
    }
    assert metric(server, "pulseboard_messages_out_total", '{transport="sse"}') >= total


# --- the stream's shape ----------------------------------------------------------------------


async def test_sse_headers_retry_and_subscribed(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        async with client.stream("GET", server.url + "/sse?ch=h.a", headers=auth()) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache, no-transform"
            assert r.headers["x-accel-buffering"] == "no"
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    break
    assert lines[0] == "retry: 1000"
    assert lines[1] == "event: subscribed"
    assert lines[2].startswith("id: ")
    sub = json.loads(lines[3][len("data: "):])
    assert sub["ch"] == "h.a" and sub["recovered"] is True and sub["seq"] == 0
    assert decode_cursor(lines[2][4:]) == {"h.a": (sub["epoch"], 0)}


async def test_sse_backfill_then_live(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        await post(client, server, [{"ch": "b.a", "data": {"i": i}} for i in range(10)])
        url = server.url + "/sse?ch=b.a&backfill=3"
        opened = asyncio.Event()
        task = asyncio.create_task(
            read_events(client, url, auth(), lambda evs: len(envelopes(evs)) >= 4, opened=opened)
        )
        await asyncio.wait_for(opened.wait(), 15)
        await post(client, server, {"ch": "b.a", "data": {"i": 10}})
        events = await task
    assert [e["seq"] for e in envelopes(events)] == [8, 9, 10, 11]
    assert named(events, "subscribed")[0]["seq"] == 10


async def test_sse_long_replay_is_paced_not_dropped(server_factory: Callable[..., ServerProcess]) -> None:
    """A backfill ten times the client buffer arrives whole, in bounded events, without a 4429 close."""
    server = server_factory("--max-buffer", "100000")
    async with httpx.AsyncClient(timeout=15) as client:
        await post(client, server, [{"ch": "big", "data": {"i": i, "pad": "p" * 1000}} for i in range(1000)])
        events = await read_events(client, server.url + "/sse?ch=big&backfill=1000", auth(),
                                   lambda evs: len(envelopes(evs)) >= 1000 or bool(named(evs, "close")))
    assert named(events, "close") == []
    assert [e["data"]["i"] for e in envelopes(events)] == list(range(1000))
    assert max(len(ev.data) for ev in events) <= 100000 // 4 + 2000
    assert metric(server, "pulseboard_slow_client_drops_total") == 0


async def test_sse_resume_after_lost_history_or_epoch_says_recovered_false(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--history", "5", "--broker", "memory://")  # a count-bounded window
    async with httpx.AsyncClient(timeout=15) as client:
        await post(client, server, [{"ch": "r.a", "data": {"i": i}} for i in range(20)])
        r = await client.get(server.url + "/channels", headers=auth())
        epoch = next(c["epoch"] for c in r.json()["channels"] if c["ch"] == "r.a")

        def two_subscribed_or_data(evs: list[ServerSentEvent]) -> bool:
            return bool(named(evs, "subscribed")) and len(envelopes(evs)) >= 5

        # history lost what the cursor needs: recovered false, then what history still holds
        gone = encode_cursor({"r.a": (epoch, 2)})
        evs = await read_events(client, server.url + "/sse?ch=r.a", {**auth(), "Last-Event-ID": gone},
                                two_subscribed_or_data)
        assert named(evs, "subscribed")[0]["recovered"] is False
        assert [e["seq"] for e in envelopes(evs)] == [16, 17, 18, 19, 20]

        # another epoch (e.g. the server restarted): recovered false, nothing replayed, live from top
        other = encode_cursor({"r.a": ("another-epoch", 3)})
        evs = await read_events(client, server.url + f"/sse?ch=r.a&last_event_id={other}", auth(),
                                lambda evs: bool(evs))
        sub = named(evs, "subscribed")[0]
        assert sub["recovered"] is False and sub["epoch"] == epoch and sub["seq"] == 20
        assert decode_cursor(evs[0].id or "") == {"r.a": (epoch, 20)}

        # a cursor inside history: recovered true and exactly the rest
        inside = encode_cursor({"r.a": (epoch, 17)})
        evs = await read_events(client, server.url + "/sse?ch=r.a", {**auth(), "Last-Event-ID": inside},
                                lambda evs: len(envelopes(evs)) >= 3)
        assert named(evs, "subscribed")[0]["recovered"] is True
        assert [e["seq"] for e in envelopes(evs)] == [18, 19, 20]


async def test_sse_refuses_before_streaming(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        base = server.url + "/sse"
        r = await client.get(base + "?ch=a")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await client.get(base + "?ch=secret.x", headers=auth(token(read=["public.*"])))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = await client.get(base + "?ch=bad%20name", headers=auth())
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = await client.get(base + "?ch=a", headers={**auth(), "Last-Event-ID": "not-a-cursor"})
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = await client.get(base, headers=auth())
        assert r.status_code == 400
        r = await client.get(base + "?ch=a&backfill=-1", headers=auth())
        assert r.status_code == 400


# --- heartbeat, expiry, shutdown, slow clients -------------------------------------------------


async def test_sse_heartbeat_comments(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--heartbeat", "0.2")
    pings = 0
    async with httpx.AsyncClient(timeout=15) as client:
        async with client.stream("GET", server.url + "/sse?ch=hb", headers=auth()) as r:

            async def count() -> None:
                nonlocal pings
                async for line in r.aiter_lines():
                    if line == ": ping":
                        pings += 1
                        if pings == 3:
                            return

            await asyncio.wait_for(count(), 15)
    assert pings == 3


async def test_sse_token_expiry_sends_close_4001(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        evs = await read_events(client, server.url + "/sse?ch=x", auth(token(ttl=2)),
                                lambda evs: evs[-1].event == "close", timeout=20)
    close = named(evs, "close")[0]
    assert close["code"] == 4001
    assert evs[-1].id  # even the close event carries the cursor


async def test_sse_server_shutdown_ends_stream(server: ServerProcess) -> None:
    seen = asyncio.Event()
    events: list[ServerSentEvent] = []

    async def go(client: httpx.AsyncClient) -> None:
        async with aconnect_sse(client, "GET", server.url + "/sse?ch=x", headers=auth()) as source:
            async for ev in source.aiter_sse():
                events.append(ev)
                seen.set()

    async with httpx.AsyncClient(timeout=30) as client:
        task = asyncio.create_task(go(client))
        await asyncio.wait_for(seen.wait(), 15)
        code = await asyncio.to_thread(server.terminate, 15)
        await asyncio.wait_for(task, 15)  # the stream ended (the loop finished by itself)
    assert code == 0
    assert named(events, "close") == [{"code": 1001, "detail": "server going away"}]


async def test_sse_disconnect_releases_the_client(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        await read_events(client, server.url + "/sse?ch=d", auth(), lambda evs: bool(evs))
    await asyncio.to_thread(
        wait_until, lambda: metric(server, "pulseboard_connections", '{transport="sse"}') == 0, 15
    )


async def test_sse_slow_client_is_dropped(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-buffer", "65536")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /sse?ch=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token()}\r\n\r\n".encode())
    try:
        assert sock.recv(12) == b"HTTP/1.1 200"  # then never read again
        big = "x" * 50_000
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(400):
                await post(client, server, [{"ch": "slow", "data": {"pad": big}}] * 4)
                if metric(server, "pulseboard_slow_client_drops_total") >= 1:
                    break
        assert metric(server, "pulseboard_slow_client_drops_total") == 1
        await asyncio.to_thread(
            wait_until, lambda: metric(server, "pulseboard_connections", '{transport="sse"}') == 0, 15
        )
    finally:
        sock.close()


# --- browsers on another origin (a local JupyterLab) -------------------------------------------


async def test_cross_origin_pages_can_use_the_fallbacks(server: ServerProcess) -> None:
    """EventSource and fetch need CORS headers; the WebSocket's origin rule decides who gets them."""
    lab = "http://localhost:8888"  # allowed while the server listens on loopback
    async with httpx.AsyncClient(timeout=15) as client:
        for path, method in (("/ticket", "POST"), ("/poll?ch=c", "GET"), ("/publish", "POST")):
            r = await client.options(server.url + path, headers={
                "Origin": lab, "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            })
            assert r.status_code == 204
            assert r.headers["access-control-allow-origin"] == lab
            assert "Authorization" in r.headers["access-control-allow-headers"]
            assert method in r.headers["access-control-allow-methods"]
        r = await client.post(server.url + "/ticket", json={"ch": ["c"]}, headers={**auth(), "Origin": lab})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == lab
        ticket = r.json()["ticket"]
        async with client.stream("GET", f"{server.url}/sse?ch=c&ticket={ticket}", headers={
            "Origin": lab, "Accept": "text/event-stream",
        }) as resp:
            assert resp.status_code == 200
            assert resp.headers["access-control-allow-origin"] == lab
        r = await client.get(server.url + "/poll?ch=c", headers={"Origin": lab})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == lab  # errors readable

        evil = "https://evil.example"
        r = await client.get(server.url + "/poll?ch=c", headers={**auth(), "Origin": evil})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = await client.options(server.url + "/ticket", headers={
            "Origin": evil, "Access-Control-Request-Method": "POST",
        })
        assert "access-control-allow-origin" not in r.headers


# --- continuity lost: a Redis restarted without persistence -------------------------------------


@pytest.mark.redis
async def test_sse_reset_event_when_numbering_restarts(
    server_factory: Callable[..., ServerProcess], redis_factory: Callable[..., RedisProcess],
) -> None:
    redis = redis_factory()
    server = server_factory("--broker", redis.url)
    events: list[ServerSentEvent] = []
    arrived = asyncio.Condition()

    async def listen(client: httpx.AsyncClient) -> None:
        async with aconnect_sse(client, "GET", server.url + "/sse?ch=rs", headers=auth()) as source:
            async for ev in source.aiter_sse():
                async with arrived:
                    events.append(ev)
                    arrived.notify_all()

    async def until(pred: Callable[[], bool]) -> None:
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(pred), 30)

    async with httpx.AsyncClient(timeout=30) as client:
        task = asyncio.create_task(listen(client))
        try:
            await until(lambda: bool(named(events, "subscribed")))
            old = named(events, "subscribed")[0]["epoch"]
            await post(client, server, [{"ch": "rs", "data": {"i": i}} for i in range(3)])
            await until(lambda: len(envelopes(events)) == 3)
            before = events[-1].id or ""
            redis.stop()
            redis.start()  # same port, no data: the channel's numbering starts again
            await until(lambda: bool(named(events, "reset")))
            reset = named(events, "reset")[0]
            assert reset["ch"] == "rs" and reset["epoch"] != old and reset["seq"] == 0
            assert decode_cursor(events[-1].id or "") == {"rs": (reset["epoch"], 0)}

            async def publish_again() -> bool:
                try:
                    await post(client, server, {"ch": "rs", "data": {"i": 3}})
                    return True
                except httpx.HTTPStatusError:  # 503 until the server sees Redis again
                    return False

            while not await publish_again():
                await asyncio.sleep(0.1)
            await until(lambda: len(envelopes(events)) == 4)
            assert envelopes(events)[-1]["seq"] == 1
            assert decode_cursor(events[-1].id or "") == {"rs": (reset["epoch"], 1)}
        finally:
            task.cancel()
        # resuming from before the restart: recovered false, nothing replayed
        evs = await read_events(client, server.url + "/sse?ch=rs", {**auth(), "Last-Event-ID": before},
                                lambda evs: bool(evs))
        sub = named(evs, "subscribed")[0]
        assert sub["recovered"] is False and sub["epoch"] == reset["epoch"] and sub["seq"] == 1


async def test_sse_head_probe_checks_without_streaming(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.head(server.url + "/sse?ch=probe", headers=auth())
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        r = await client.head(server.url + "/sse?ch=probe")
        assert r.status_code == 401
    assert metric(server, "pulseboard_connections", '{transport="sse"}') == 0
