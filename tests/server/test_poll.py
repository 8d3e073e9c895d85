"""GET poll against a real server: exact resume through the cursor, waiting, limits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness.channels import metric
from harness.servers import RedisProcess, ServerProcess, wait_until
from harness.tokens import auth, token
from pulseboard.protocol import decode_cursor, encode_cursor


async def post(client: httpx.AsyncClient, server: ServerProcess, body: Any) -> list[int]:
    r = await client.post(server.url + "/publish", json=body, headers=auth())
    r.raise_for_status()
    seqs: list[int] = r.json()["seqs"]
    return seqs


async def poll(client: httpx.AsyncClient, server: ServerProcess, query: str, **params: Any) -> dict[str, Any]:
    """GET poll with `query` (e.g. "ch=a&ch=b&backfill=3") plus `params`."""
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    r = await client.get(server.url + "/poll?" + query + extra, headers=auth())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = r.json()
    return answer



def polls_open(server: ServerProcess) -> float:
    return metric(server, "pulseboard_connections", '{transport="poll"}')


async def test_poll_is_exact_across_20_polls(server: ServerProcess) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    channels = ("p.a", "p.b")
    query = "ch=p.a&ch=p.b"
    published: dict[str, list[int]] = {ch: [] for ch in channels}
    received: dict[str, list[dict[str, Any]]] = {ch: [] for ch in channels}
    counter = 0

    async def publish_some(client: httpx.AsyncClient, n: int) -> None:
        nonlocal counter
        picks = [(rng.choice(channels), counter + k) for k in range(n)]
        counter += n
        await post(client, server, [{"ch": ch, "data": {"i": i}} for ch, i in picks])
        for ch, i in picks:
            published[ch].append(i)

    async with httpx.AsyncClient(timeout=40) as client:
        first = await poll(client, server, query)  # no cursor: answers at once with the current cursor
        assert first["msgs"] == []
        assert sorted(op["ch"] for op in first["ops"]) == list(channels)
        assert all(op["op"] == "subscribed" and op["recovered"] is True for op in first["ops"])
        cursor = first["cursor"]
        for i in range(20):
            if i % 4 == 3:
                # nothing waiting: the poll waits and answers when a message arrives meanwhile
                waiting = asyncio.create_task(poll(client, server, query, cursor=cursor))
                await asyncio.to_thread(wait_until, lambda: polls_open(server) == 1, 15)
                await publish_some(client, rng.randint(1, 5))
                answer = await waiting
            else:
                await publish_some(client, rng.randint(1, 40))  # already waiting: answers at once
                answer = await poll(client, server, query, cursor=cursor)
            assert answer["msgs"], f"poll {i} came back empty (seed {seed})"
            assert answer["ops"] == []
            for env in answer["msgs"]:
                received[env["ch"]].append(env)
            pos = decode_cursor(answer["cursor"])
            for ch in channels:
                assert pos[ch][1] == len(received[ch]), f"seed {seed}"
            cursor = answer["cursor"]
        # any stragglers of the last waiting poll
        rest = await poll(client, server, query, cursor=cursor, timeout=0)
        for env in rest["msgs"]:
            received[env["ch"]].append(env)

    for ch in channels:
        assert [e["data"]["i"] for e in received[ch]] == published[ch], f"seed {seed}"
        assert [e["seq"] for e in received[ch]] == list(range(1, len(published[ch]) + 1)), f"seed {seed}"
    assert metric(server, "pulseboard_messages_out_total", '{transport="poll"}') == counter


async def test_poll_times_out_with_the_same_cursor(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=40) as client:
        await post(client, server, {"ch": "q", "data": {"i": 0}})
        first = await poll(client, server, "ch=q")
        again = await poll(client, server, "ch=q", cursor=first["cursor"], timeout=0.3)
    assert again == {"cursor": first["cursor"], "msgs": [], "ops": []}


async def test_poll_backfill_without_cursor(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=40) as client:
        await post(client, server, [{"ch": "bf", "data": {"i": i}} for i in range(10)])
        answer = await poll(client, server, "ch=bf&backfill=4")
    assert [e["seq"] for e in answer["msgs"]] == [7, 8, 9, 10]
    (op,) = answer["ops"]
    assert op["op"] == "subscribed" and op["seq"] == 10 and op["recovered"] is True
    assert decode_cursor(answer["cursor"]) == {"bf": (op["epoch"], 10)}


async def test_poll_recovered_false_for_wrong_epoch_or_lost_history(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--history", "5", "--broker", "memory://")  # a count-bounded window
    async with httpx.AsyncClient(timeout=40) as client:
        await post(client, server, [{"ch": "lost", "data": {"i": i}} for i in range(20)])
        epoch = (await poll(client, server, "ch=lost"))["ops"][0]["epoch"]

        # history no longer holds seq 3..15: recovered false, then what it still holds
        answer = await poll(client, server, "ch=lost", cursor=encode_cursor({"lost": (epoch, 2)}))
        assert answer["ops"] == [{"op": "subscribed", "ch": "lost", "epoch": epoch, "seq": 20,
                                  "recovered": False}]
        assert [e["seq"] for e in answer["msgs"]] == [16, 17, 18, 19, 20]
        assert decode_cursor(answer["cursor"]) == {"lost": (epoch, 20)}

        # a cursor from another numbering (a restarted server): recovered false, nothing replayed
        answer = await poll(client, server, "ch=lost", cursor=encode_cursor({"lost": ("old-epoch", 7)}))
        assert answer["ops"] == [{"op": "subscribed", "ch": "lost", "epoch": epoch, "seq": 20,
                                  "recovered": False}]
        assert answer["msgs"] == []
        assert decode_cursor(answer["cursor"]) == {"lost": (epoch, 20)}

        # a cursor still inside history: no op, exactly the rest
        answer = await poll(client, server, "ch=lost", cursor=encode_cursor({"lost": (epoch, 18)}))
        assert answer["ops"] == []
        assert [e["seq"] for e in answer["msgs"]] == [19, 20]


async def test_poll_answer_is_bounded_and_continues(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-buffer", "3000")
    async with httpx.AsyncClient(timeout=40) as client:
        await post(client, server, [{"ch": "big", "data": {"pad": "x" * 200, "i": i}} for i in range(40)])
        epoch = (await poll(client, server, "ch=big"))["ops"][0]["epoch"]
        cursor, polls = encode_cursor({"big": (epoch, 0)}), 0
        got: list[dict[str, Any]] = []
        while len(got) < 40:
            answer = await poll(client, server, "ch=big", cursor=cursor, timeout=0)
            assert 0 < len(answer["msgs"]) < 40
            got.extend(answer["msgs"])
            cursor, polls = answer["cursor"], polls + 1
    assert [e["data"]["i"] for e in got] == list(range(40))
    assert polls > 1


async def test_poll_refusals(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=40) as client:
        base = server.url + "/poll"
        r = await client.get(base + "?ch=a")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await client.get(base + "?ch=secret", headers=auth(token(read=["public.*"])))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = await client.get(base + "?ch=a&cursor=%%%", headers=auth())
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = await client.get(base + "?ch=a*b", headers=auth())
        assert r.status_code == 400
        r = await client.get(base + "?ch=a&timeout=soon", headers=auth())
        assert r.status_code == 400
        # a cursor naming a channel the token may not read is refused too
        r = await client.get(base, params={"cursor": encode_cursor({"secret": ("e", 1)})},
                             headers=auth(token(read=["public.*"])))
        assert r.status_code == 403


async def test_poll_client_leaving_releases_the_subscription(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=40) as client:
        first = await poll(client, server, "ch=gone")
        waiting = asyncio.create_task(poll(client, server, "ch=gone", cursor=first["cursor"]))
        await asyncio.to_thread(
            wait_until, lambda: metric(server, "pulseboard_connections", '{transport="poll"}') == 1, 15
        )
        waiting.cancel()  # the client hangs up mid-wait
    await asyncio.to_thread(
        wait_until, lambda: metric(server, "pulseboard_connections", '{transport="poll"}') == 0, 15
    )


async def test_poll_answers_on_shutdown(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=40) as client:
        first = await poll(client, server, "ch=sd")
        waiting = asyncio.create_task(poll(client, server, "ch=sd", cursor=first["cursor"]))
        await asyncio.to_thread(
            wait_until, lambda: metric(server, "pulseboard_connections", '{transport="poll"}') == 1, 15
        )
        code = await asyncio.to_thread(server.terminate, 15)
        answer = await waiting
    assert code == 0
    assert answer == {"cursor": first["cursor"], "msgs": [], "ops": []}


@pytest.mark.redis
async def test_poll_reset_op_when_numbering_restarts(
    server_factory: Callable[..., ServerProcess], redis_factory: Callable[..., RedisProcess],
) -> None:
    redis = redis_factory()
    server = server_factory("--broker", redis.url)
    async with httpx.AsyncClient(timeout=40) as client:
        await post(client, server, [{"ch": "rp", "data": {"i": i}} for i in range(3)])
        first = await poll(client, server, "ch=rp")
        old = first["ops"][0]["epoch"]
        waiting = asyncio.create_task(poll(client, server, "ch=rp", cursor=first["cursor"]))
        await asyncio.to_thread(wait_until, lambda: polls_open(server) == 1, 15)
        redis.stop()
        redis.start()  # same port, no data: the channel's numbering starts again
        answer = await waiting
        (op,) = answer["ops"]
        assert op["op"] == "reset" and op["ch"] == "rp" and op["epoch"] != old and op["seq"] == 0
        assert answer["msgs"] == []
        assert decode_cursor(answer["cursor"]) == {"rp": (op["epoch"], 0)}
        # the old cursor is from another numbering now
        again = await poll(client, server, "ch=rp", cursor=first["cursor"], timeout=0)
        assert again["ops"][0]["recovered"] is False and again["ops"][0]["epoch"] == op["epoch"]
