"""Many clients, many messages, many random faults: every client ends with exactly seq 1..N.

Each transport gets `CLIENTS` readers through the fault proxy; a publisher (straight to the
server) sends `TOTAL` messages over two channels in batches, and after every batch the proxy
breaks one random live connection: a FIN or an RST cut (so frames and events are cut in the
middle), or, between cuts, a stall or a slow-reader spell. Afterwards each reader's raw
stream, recorded before any dedupe, is exactly 1..N per channel: nothing lost, nothing doubled,
nothing reordered, and the server never had to say `recovered: false`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from random import Random

import httpx
import pytest
from faultproxy import FaultProxy, Link
from faultsupport import LONG, READERS, Reader, auth, seeded, timed, until

from harness.servers import ServerProcess
from harness.tokens import token

# CI mode: fewer readers (each long-poll costs a request per answer); PULSEBOARD_LONG=1: 50 each
CLIENTS = {"ws": 50, "sse": 50, "poll": 50} if LONG else {"ws": 30, "sse": 30, "poll": 10}
TOTAL = 20_000  # messages, over two channels
CUTS = 200
AHEAD = 3000  # the publisher stays at most this many messages ahead of the slowest reader
ROUNDS = 3 if LONG else 1  # PULSEBOARD_LONG=1 repeats the whole run (new seed each round)


async def fault(proxy: FaultProxy, rng: Random, spells: list[asyncio.Task[None]]) -> str:
    """Break one random live link; returns what was done."""
    await proxy.wait_for(proxy.live)
    link = rng.choice(proxy.live())
    kind = rng.choices(["fin", "rst", "stall", "slow"], [4, 4, 1, 1])[0]
    if kind in ("fin", "rst"):
        proxy.cut(link, rst=kind == "rst")
    else:
        spells.append(asyncio.create_task(spell(proxy, link, kind, rng.uniform(0.05, 0.5))))
    return kind


async def spell(proxy: FaultProxy, link: Link, kind: str, seconds: float) -> None:
    """A stall or a slow-reader spell of `seconds`, then back to normal (a simulated fault's length)."""
    if kind == "stall":
        proxy.stall(link)
    else:
        proxy.slow(link, chunk=256, delay=0.005)
    await asyncio.sleep(seconds)
    proxy.resume(link)
    proxy.fast(link)


async def run_round(server: ServerProcess, transport: str, rng: Random, channels: tuple[str, ...]) -> None:
    proxy = await FaultProxy(server.port).start()
    tok = token()
    readers: list[Reader] = [READERS[transport](proxy.url, channels, tok, rng) for _ in range(CLIENTS[transport])]
    for r in readers:
        r.start()
    spells: list[asyncio.Task[None]] = []
    kinds: dict[str, int] = {}
    try:
        await until(lambda: all(r.subscribed() for r in readers), what="every reader to subscribe")
        per_batch = TOTAL // CUTS
        slowest: Callable[[], int] = lambda: min(r.count() for r in readers)  # noqa: E731

        async with httpx.AsyncClient(timeout=30, headers=auth(tok)) as http:
            sent = 0
            cuts = 0
            while sent < TOTAL:
                await until(lambda s=sent: s - slowest() <= AHEAD, what="readers to keep up")
                body = [{"ch": channels[(sent + k) % len(channels)], "data": {"i": sent + k}}
                        for k in range(per_batch)]
                r = await http.post(server.url + "/publish", json=body)
                r.raise_for_status()
                sent += per_batch
                while True:  # one cut per batch; stalls and slow spells come on top
                    kind = await fault(proxy, rng, spells)
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if kind in ("fin", "rst"):
                        cuts += 1
                        break
        await until(lambda: slowest() >= TOTAL, 120, what="every reader to catch up")
        print(f"{transport}: {CLIENTS[transport]} clients, {TOTAL} messages, faults {kinds}, "
              f"{proxy.accepted} connections through the proxy")
        assert cuts == CUTS
        want = list(range(1, TOTAL // len(channels) + 1))
        for r in readers:
            for ch in channels:
                assert r.raw[ch] == want, f"{transport} reader: {ch} is not exactly 1..N"
            assert not r.resets(), r.resets()
    finally:
        for t in spells:
            t.cancel()
        for r in readers:
            await r.stop()
        await proxy.close()
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_every_client_ends_with_exactly_1_to_n(
    server_factory: Callable[..., ServerProcess], transport: str
) -> None:
    rng = seeded(f"cuts[{transport}]")
    server = server_factory("--broker", "memory://", "--history", str(TOTAL))
    for i in range(ROUNDS):
        with timed(f"{transport} round {i + 1}"):
            await run_round(server, transport, Random(rng.randrange(1 << 30)), (f"f{i}.a", f"f{i}.b"))
