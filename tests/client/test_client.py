"""The Python async client: exact resume across dropped connections, gaps reported, refusals raised."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from harness.servers import ServerProcess
from harness.tokens import token
from harness.ws import publish
from pulseboard.client import Client, Gap, SubscribeError, backoff_delay


async def take(client: Client, n: int, timeout: float = 15) -> list[int]:
    out: list[int] = []

    async def run() -> None:
        async for env in client:
            out.append(env.data["i"])
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_resumes_exactly_after_drops(server: ServerProcess) -> None:
    client = Client(["c"], url=server.url, token=token())
    it = client.__aiter__()
    client.start()
    await client.wait_connected()
    received: list[int] = []
    for round_ in range(5):
        await asyncio.to_thread(publish, server, "c", 20, round_ * 20)
        while len(received) < (round_ + 1) * 20:
            env = await asyncio.wait_for(it.__anext__(), 15)
            received.append(env.data["i"])
        # Cut the connection abruptly, publish while it is down, expect exact resume.
        connects = client.connects
        assert client._ws is not None
        client._ws.transport.abort()
        await asyncio.to_thread(publish, server, "c", 7, 1000 + round_ * 7)
        while len(received) < (round_ + 1) * 20 + 7:
            env = await asyncio.wait_for(it.__anext__(), 15)
            received.append(env.data["i"])
        assert client.connects == connects + 1
        received = [i for i in received if i < 1000]  # keep the main sequence for the check below
    assert received == list(range(100))
    assert list(client.gaps) == []
    await client.close()


async def test_restart_reports_a_gap(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--broker", "memory://")  # its numbering restarts (sqlite:// keeps it)
    gaps: list[Gap] = []
    client = Client(["c"], url=srv.url, token=token(), on_gap=gaps.append)
    it = client.__aiter__()
    client.start()
    await client.wait_connected()
    await asyncio.to_thread(publish, srv, "c", 3)
    for _ in range(3):
        await asyncio.wait_for(it.__anext__(), 15)
    old_epoch = client.positions["c"][0]
    srv.terminate()
    srv.start()
    await asyncio.to_thread(srv.wait_ready)
    while client.connects < 2 or not client._connected.is_set():
        await asyncio.sleep(0.05)
    await asyncio.to_thread(publish, srv, "c", 1, 50)
    env = await asyncio.wait_for(it.__anext__(), 30)
    assert env.data["i"] == 50 and env.seq == 1
    assert gaps and gaps[0].reason == "epoch changed" and client.positions["c"][0] != old_epoch
    await client.close()


async def test_backfill(server: ServerProcess) -> None:
    publish(server, "b", 10)
    client = Client(["b"], url=server.url, token=token(), backfill=4)
    assert await take(client, 4) == [6, 7, 8, 9]


async def test_refused_token_raises(server: ServerProcess) -> None:
    client = Client(["b"], url=server.url, token="bad")
    with pytest.raises(SubscribeError, match="401"):
        await take(client, 1)


async def test_forbidden_channel_raises(server: ServerProcess) -> None:
    client = Client(["secret"], url=server.url, token=token(read=["sys.*"]))
    with pytest.raises(SubscribeError, match="forbidden"):
        await take(client, 1)


def test_backoff_is_full_jitter_and_capped() -> None:
    for attempt in range(12):
        d = backoff_delay(attempt)
        assert 0 <= d <= min(20.0, 0.5 * 2**attempt)
    assert max(backoff_delay(50) for _ in range(200)) <= 20.0
