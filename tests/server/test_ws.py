"""The WebSocket transport over real sockets: backfill, exact resume, epochs, bad input, slow clients."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from harness.servers import ServerProcess, wait_until
from harness.tokens import token
from harness.ws import WireClient, open_ws, publish, recv_envelopes, recv_json, recv_op, subscribe


async def test_backfill_then_live(server: ServerProcess) -> None:
    publish(server, "m", 10)
    async with await open_ws(server) as ws:
        (sub,) = await subscribe(ws, {"m": {"backfill": 4}})
        assert sub["seq"] == 10 and sub["recovered"] is True and sub["epoch"]
        got = await recv_envelopes(ws, 4)
        assert [e["seq"] for e in got] == [7, 8, 9, 10]
        assert [e["data"]["i"] for e in got] == [6, 7, 8, 9]
        publish(server, "m", 2, start=10)
        assert [e["seq"] for e in await recv_envelopes(ws, 2)] == [11, 12]


async def test_backfill_clamped_to_history(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--history", "5")
    publish(srv, "m", 12)
    async with await open_ws(srv) as ws:
        await subscribe(ws, {"m": {"backfill": 300}})
        assert [e["seq"] for e in await recv_envelopes(ws, 5)] == [8, 9, 10, 11, 12]


async def test_long_replay_is_paced_not_dropped(server_factory: Callable[..., ServerProcess]) -> None:
    """A replay ten times the client buffer arrives whole: it waits for room instead of tripping 4429."""
    srv = server_factory("--max-buffer", "100000")
    body = [{"ch": "big", "data": {"i": i, "pad": "p" * 1000}} for i in range(1000)]
    httpx.post(srv.url + "/publish", json=body, headers={"Authorization": f"Bearer {token()}"}).raise_for_status()
    async with await open_ws(srv) as ws:
        await subscribe(ws, {"big": {"backfill": 1000}})
        got = await recv_envelopes(ws, 1000)
        assert [e["data"]["i"] for e in got] == list(range(1000))
    assert "pulseboard_slow_client_drops_total 0.0" in httpx.get(srv.url + "/metrics").text


async def test_exact_resume(server: ServerProcess) -> None:
    """Publish N, drop, publish M, resume with since: exactly the M, in order, recovered."""
    async with await open_ws(server) as ws:
        (sub,) = await subscribe(ws, {"r": None})
        epoch = sub["epoch"]
        publish(server, "r", 30)
        seen = await recv_envelopes(ws, 30)
    last = seen[-1]["seq"]
    publish(server, "r", 25, start=30)
    async with await open_ws(server) as ws:
        (sub,) = await subscribe(ws, {"r": {"since": last, "epoch": epoch}})
        assert sub["recovered"] is True and sub["seq"] == 55
        got = await recv_envelopes(ws, 25)
        assert [e["seq"] for e in got] == list(range(31, 56))
        assert [e["data"]["i"] for e in got] == list(range(30, 55))
        publish(server, "r", 1, start=55)
        assert [e["seq"] for e in await recv_envelopes(ws, 1)] == [56]  # no duplicate before it


async def test_resume_older_than_history_is_not_recovered(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--history", "10", "--broker", "memory://")  # a count-bounded window
    async with await open_ws(srv) as ws:
        (sub,) = await subscribe(ws, {"r": None})
    publish(srv, "r", 40)
    async with await open_ws(srv) as ws:
        (sub2,) = await subscribe(ws, {"r": {"since": 5, "epoch": sub["epoch"]}})
        assert sub2["recovered"] is False
        got = await recv_envelopes(ws, 10)
        assert [e["seq"] for e in got] == list(range(31, 41))  # what history still holds


async def test_resume_with_other_epoch_is_not_recovered(server: ServerProcess) -> None:
    publish(server, "r", 5)
    async with await open_ws(server) as ws:
        (sub,) = await subscribe(ws, {"r": {"since": 2, "epoch": "not-this-one"}})
        assert sub["recovered"] is False and sub["seq"] == 5
        publish(server, "r", 1, start=5)
        assert [e["seq"] for e in await recv_envelopes(ws, 1)] == [6]  # nothing replayed


async def test_restart_gives_a_new_epoch(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--broker", "memory://")  # sqlite:// keeps its epoch: test_store.py
    publish(srv, "r", 3)
    async with await open_ws(srv) as ws:
        (before,) = await subscribe(ws, {"r": None})
    assert srv.terminate() == 0
    srv.start()
    publish(srv, "r", 1)
    async with await open_ws(srv) as ws:
        (after,) = await subscribe(ws, {"r": {"since": 3, "epoch": before["epoch"]}})
    assert after["epoch"] != before["epoch"]
    assert after["recovered"] is False


async def test_unsubscribe_stops_delivery(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await subscribe(ws, {"a": None, "b": None})
        await ws.send(json.dumps({"op": "unsubscribe", "ch": ["a"]}))
        await recv_op(ws, "unsubscribed")
        publish(server, "a", 3)
        publish(server, "b", 1)
        got = await recv_envelopes(ws, 1)
        assert [e["ch"] for e in got] == ["b"]


async def test_batches_keep_per_channel_order(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await subscribe(ws, {"a": None, "b": None})
        body = [{"ch": "ab"[i % 2], "data": {"i": i}} for i in range(200)]
        hdrs = {"Authorization": f"Bearer {token()}"}
        httpx.post(server.url + "/publish", json=body, headers=hdrs).raise_for_status()
        frames = 0
        got: list[dict[str, object]] = []
        while len(got) < 200:
            msg = await recv_json(ws)
            frames += 1
            got.extend(msg)
        assert frames < 200  # batched within the tick
        for ch in "ab":
            assert [e["seq"] for e in got if e["ch"] == ch] == list(range(1, 101))


BAD_FRAMES = [
    ("not json", "bad_request"),
    ('{"op":"warp"}', "bad_request"),
    ('{"op":"subscribe","ch":"x"}', "bad_request"),
    ('{"op":"subscribe","ch":{"bad channel!":null}}', "bad_request"),
    ('{"op":"subscribe","ch":{"ok":{"backfill":"lots"}}}', "bad_request"),
    ('{"op":"publish","ch":"ok","data":"string"}', "bad_request"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_input_gets_error_op_and_connection_goes_on(server: ServerProcess, frame: str, code: str) -> None:
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        await ws.send(frame)
        err = await recv_op(ws, "error")
        assert err["code"] == code and err["detail"]
        await ws.send('{"op":"ping"}')
        await recv_op(ws, "pong")


async def test_binary_and_oversize_frames(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--max-message-size", "1000")
    async with await open_ws(srv) as ws:
        await recv_op(ws, "welcome")
        await ws.send(b"\x00\x01")
        err = await recv_op(ws, "error")
        assert err["code"] == "bad_request" and "binary" in err["detail"]
        await ws.send(json.dumps({"op": "publish", "ch": "x", "data": {"blob": "x" * 2000}}))
        err = await recv_op(ws, "error")
        assert err["code"] == "too_large"
        await ws.send('{"op":"ping"}')
        await recv_op(ws, "pong")


async def test_repeated_violations_close_4400(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        for _ in range(10):
            await ws.send("garbage")
        with pytest.raises(ConnectionClosed):
            while True:
                await recv_json(ws)
        assert ws.close_code == 4400


async def test_bad_client_does_not_disturb_others(server: ServerProcess) -> None:
    async with await open_ws(server) as good, await open_ws(server) as bad:
        await subscribe(good, {"g": None})
        for _ in range(10):
            await bad.send("{{{")
        publish(server, "g", 5)
        assert [e["seq"] for e in await recv_envelopes(good, 5)] == [1, 2, 3, 4, 5]


async def test_slow_consumer_closed_4429_while_fast_one_keeps_pace(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Long pings: on a loaded machine the keepalive must not close the stalled client first.
    srv = server_factory("--max-buffer", "400000", "--ping-interval", "120")
    stalled = WireClient(srv)
    stalled.send_text(json.dumps({"op": "subscribe", "ch": {"s": None}}))
    fast = await open_ws(srv)
    await subscribe(fast, {"s": None})

    def drops() -> bool:
        text = httpx.get(srv.url + "/metrics").text
        m = re.search(r"^pulseboard_slow_client_drops_total (\S+)", text, re.M)
        return m is not None and float(m.group(1)) >= 1

    payload = "x" * 2000
    sent = 0
    auth = {"Authorization": f"Bearer {token()}"}
    while not drops():
        body = [{"ch": "s", "data": {"n": n, "pad": payload}} for n in range(sent, sent + 50)]
        httpx.post(srv.url + "/publish", json=body, headers=auth).raise_for_status()
        sent += 50
        # The fast client keeps its pace: it has everything published so far.
        got = await recv_envelopes(fast, 50)
        assert [e["data"]["n"] for e in got] == list(range(sent - 50, sent))
        assert sent < 50_000, "slow client was never dropped"
    # The stalled client reads again: what was in flight, then the 4429 close.
    await asyncio.to_thread(stalled.read_all)
    assert stalled.proto.close_rcvd is not None and stalled.proto.close_rcvd.code == 4429
    publish(srv, "s", 1, start=sent, field="n")
    assert (await recv_envelopes(fast, 1))[0]["data"]["n"] == sent
    await fast.close()


async def test_graceful_shutdown_closes_1001_and_exits_0(server: ServerProcess) -> None:
    clients = [await open_ws(server) for _ in range(3)]
    for ws in clients:
        await recv_op(ws, "welcome")
    assert server.proc is not None
    server.proc.send_signal(2)  # SIGINT behaves like SIGTERM
    for ws in clients:
        with pytest.raises(ConnectionClosed):
            while True:
                await recv_json(ws)
        assert ws.close_code == 1001
    assert server.proc.wait(15) == 0


async def test_sigterm_exit_code(server: ServerProcess) -> None:
    ws = await open_ws(server)
    await recv_op(ws, "welcome")
    assert server.terminate() == 0
    with pytest.raises(ConnectionClosed):
        while True:
            await recv_json(ws)
    assert ws.close_code == 1001


async def test_many_channels_many_clients_fan_out(server: ServerProcess) -> None:
    clients = [await open_ws(server) for _ in range(20)]
    for ws in clients:
        await subscribe(ws, {"fan": {"backfill": 0}})
    publish(server, "fan", 100)
    results = await asyncio.gather(*(recv_envelopes(ws, 100) for ws in clients))
    for got in results:
        assert [e["seq"] for e in got] == list(range(1, 101))
    for ws in clients:
        await ws.close()
    wait_until(lambda: httpx.get(server.url + "/healthz").json()["connections"] == 0, what="connections to close")


async def test_refused_publish_keeps_its_id(server: ServerProcess) -> None:
    async with await open_ws(server) as ws:
        await recv_op(ws, "welcome")
        await ws.send('{"op":"publish","ch":"a","data":5,"id":"req-9"}')
        err = await recv_op(ws, "error")
        assert err["code"] == "bad_request" and err["id"] == "req-9"
        await ws.send('{"op":"publish","ch":"a","data":{"loss":NaN},"id":10}')
        assert (await recv_op(ws, "ack"))["id"] == 10


async def test_publishes_sent_just_before_a_close_are_published(server: ServerProcess) -> None:
    """Ops, then the close frame, in one TCP write: every op is still carried out (nothing lost)."""
    client = WireClient(server)
    for i in range(5):
        client.proto.send_text(json.dumps({"op": "publish", "ch": "last-words", "data": {"i": i}}).encode())
    client.proto.send_close(1000)
    client.sock.sendall(b"".join(client.proto.data_to_send()))
    client.read_all()
    client.sock.close()

    def published() -> list[int]:
        r = httpx.get(server.url + "/history?ch=last-words&last=10", headers={"Authorization": f"Bearer {token()}"})
        return [m["data"]["i"] for m in r.json()["msgs"]]

    wait_until(lambda: published() == [0, 1, 2, 3, 4], what=f"all five publishes (got {published()})")


async def test_delivered_messages_are_counted(server: ServerProcess) -> None:
    async with await open_ws(server) as a, await open_ws(server) as b:
        for ws in (a, b):
            await subscribe(ws, {"counted": None})
        publish(server, "counted", 7)
        for ws in (a, b):
            assert len(await recv_envelopes(ws, 7)) == 7
        text = httpx.get(server.url + "/metrics", timeout=10).text
        sent = re.search(r'^pulseboard_messages_out_total\{transport="ws"\} ([0-9.e+]+)$', text, re.M)
        frames = re.search(r"^pulseboard_frames_out_total ([0-9.e+]+)$", text, re.M)
        assert sent is not None and float(sent.group(1)) == 14
        assert frames is not None and 2 <= float(frames.group(1)) <= 14
