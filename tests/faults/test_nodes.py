"""Nodes and Redis failing under clients of every transport, behind Debian's nginx.

Readers (ws, sse, poll) and a publisher all go through nginx to nodes sharing one Redis.
Nodes die (`kill -9`, SIGTERM) and Redis stops, pauses (SIGSTOP, DEBUG SLEEP) and restarts
while messages flow. Publishers are told (an HTTP error, 503 `unavailable` when Redis is
gone), never silence: a publish that failed is reconciled against `history` and what is
missing is sent again. Every reader ends with exactly seq 1..N per channel.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from random import Random
from typing import Any

import httpx
import pytest
from faultsupport import READERS, Reader, WsReader, auth, seeded, until

from harness.servers import NginxProcess, RedisProcess, ServerProcess
from harness.tokens import token

Servers = Callable[..., ServerProcess]
CHANNELS = ("n.a", "n.b")
pytestmark = pytest.mark.redis

SITE = """\
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream pulseboard {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pulseboard;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout http_502;
            add_header X-Upstream $upstream_addr always;  # which node answered (reader diagnostics)
        }}
    }}
"""


def nginx_for(nodes: list[ServerProcess]) -> NginxProcess:
    servers = "\n".join(f"        server 127.0.0.1:{n.port} max_fails=1 fail_timeout=5s;" for n in nodes)
    return NginxProcess(lambda port: SITE.format(servers=servers, port=port))


def start_nodes(servers: Servers, redis: RedisProcess, n: int) -> list[ServerProcess]:
    procs = [servers("--broker", redis.url, "--node", f"n{i}", "--history", "10000", start=False)
             for i in range(n)]
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_ready()
    return procs


@pytest.fixture
def redis_aof(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory(aof=True)


def error_code(r: httpx.Response) -> str:
    """The `error` code of a JSON error answer ('' for a proxy's HTML page)."""
    try:
        return str(r.json().get("error", ""))
    except ValueError:
        return ""


class Publisher:
    """Publishes `i` = 0..total-1 round-robin over CHANNELS; a failed batch is reconciled, not guessed."""

    def __init__(self, url: str, total: int) -> None:
        self.url = url
        self.total = total
        self.sent = 0  # messages known to be numbered
        self.failures: dict[str, int] = {}  # what publishers were told: status or error name
        self.http = httpx.AsyncClient(timeout=30, headers=auth(token()))

    async def numbered(self, ch: str) -> set[int]:
        """The `i` of every message `ch` holds (asked again until the broker answers)."""
        while True:
            r = await self.http.get(self.url + "/history", params={"ch": ch, "since": 0, "limit": 10000})
            if r.status_code == 200:
                return {m["data"]["i"] for m in r.json()["msgs"]}
            await asyncio.sleep(0.2)  # broker still unavailable: try again shortly, as the 503 says

    async def batch(self, n: int) -> None:
        todo = [(CHANNELS[i % len(CHANNELS)], i) for i in range(self.sent, min(self.sent + n, self.total))]
        while todo:
            try:
                r = await self.http.post(self.url + "/publish", json=[{"ch": c, "data": {"i": i}} for c, i in todo])
                if r.status_code == 200:
                    break
                told = f"{r.status_code} {error_code(r)}".strip()
            except httpx.HTTPError as e:
                told = e.__class__.__name__
            self.failures[told] = self.failures.get(told, 0) + 1
            have = set().union(*[await self.numbered(ch) for ch in CHANNELS])
            todo = [(c, i) for c, i in todo if i not in have]  # send again only what was not numbered
        self.sent += n

    async def close(self) -> None:
        await self.http.aclose()


async def readers_through(url: str, per_transport: int, rng: Random) -> list[Reader]:
    tok = token()
    readers = [READERS[t](url, CHANNELS, tok, rng) for t in ("ws", "sse", "poll") for _ in range(per_transport)]
    for r in readers:
        r.start()
    await until(lambda: all(r.subscribed() for r in readers), what="every reader to subscribe")
    return readers


def check_exact(readers: list[Reader], total: int) -> None:
    want = list(range(1, total // len(CHANNELS) + 1))
    for r in readers:
        for ch in CHANNELS:
            assert r.raw[ch] == want, f"{r.transport} reader: {ch} is not exactly 1..N"
        assert not r.resets(), (r.transport, r.resets())


async def within(readers: list[Reader], pub: Publisher, behind: int, what: str) -> None:
    """Every reader is at most `behind` messages behind the publisher; on a timeout, each
    reader's state is printed (per channel the seqs it misses, connects, last failures, how long
    it has been quiet; a poll reader's cursor, last answers and any request in flight)."""
    try:
        await until(lambda: pub.sent - min(r.count() for r in readers) <= behind, 90, what=what)
    except TimeoutError:
        want = {ch: len(range(i, pub.sent, len(CHANNELS))) for i, ch in enumerate(CHANNELS)}
        print(f"publisher sent {pub.sent} {want}, was told {pub.failures}")
        for r in readers:
            print(r.describe(want))
        raise


async def pump(pub: Publisher, readers: list[Reader], upto: int) -> None:
    while pub.sent < upto:
        await within(readers, pub, 600, "readers to keep up")
        await pub.batch(25)


@pytest.fixture
def three(server_factory: Servers, redis_server: RedisProcess) -> Iterator[tuple[NginxProcess, list[ServerProcess]]]:
    nodes = start_nodes(server_factory, redis_server, 3)
    nginx = nginx_for(nodes)
    yield nginx, nodes
    nginx.stop()


async def test_kill_9_one_node_and_sigterm_another_mid_stream(three: tuple[NginxProcess, list[ServerProcess]]) -> None:
    nginx, nodes = three
    rng = seeded("nodes")
    total = 3000
    readers = await readers_through(nginx.url, 4, rng)
    pub = Publisher(nginx.url, total)
    try:
        await pump(pub, readers, total // 3)
        nodes[0].kill()  # kill -9, mid-stream
        await pump(pub, readers, 2 * total // 3)
        assert nodes[1].terminate() == 0  # SIGTERM: a graceful exit, clients told 1001 / `close`
        await pump(pub, readers, total)
        await within(readers, pub, 0, "every reader to catch up")
        print(f"nodes: publisher was told {pub.failures}; reader connections "
              f"{ {t: sum(r.connects for r in readers if r.transport == t) for t in ('ws', 'sse', 'poll')} }")
        check_exact(readers, total)
        ws = [r for r in readers if isinstance(r, WsReader)]
        assert all(r.client.node == "n2" for r in ws)
    finally:
        for r in readers:
            await r.stop()
        await pub.close()
    assert "Traceback" not in nodes[2].output()


async def test_redis_paused_and_restarted_under_clients(
    server_factory: Servers, redis_aof: RedisProcess
) -> None:
    nodes = start_nodes(server_factory, redis_aof, 2)
    nginx = nginx_for(nodes)
    rng = seeded("redis-faults")
    total = 1200
    readers = await readers_through(nginx.url, 3, rng)
    pub = Publisher(nginx.url, total)
    assert redis_aof.proc is not None
    try:
        await pump(pub, readers, 300)
        # SIGSTOP: Redis holds every connection open and answers nothing
        redis_aof.proc.send_signal(signal.SIGSTOP)
        told = await pub.http.post(nginx.url + "/publish", json={"ch": "n.x", "data": {"i": -1}})
        assert told.status_code == 503 and told.json()["error"] == "unavailable", told.text  # not silence
        redis_aof.proc.send_signal(signal.SIGCONT)
        await pump(pub, readers, 600)
        # DEBUG SLEEP: Redis itself blocks for a while; publishes wait, then go through
        sleeper = asyncio.create_task(asyncio.to_thread(redis_cli, redis_aof, "DEBUG", "SLEEP", "3"))
        await pump(pub, readers, 900)
        await sleeper
        # stopped, then restarted on the same port with its append-only file
        redis_aof.stop()
        told = await pub.http.post(nginx.url + "/publish", json={"ch": "n.x", "data": {"i": -1}})
        assert told.status_code == 503 and told.json()["error"] == "unavailable", told.text
        redis_aof.start()
        await pump(pub, readers, total)
        await within(readers, pub, 0, "every reader to catch up")
        print(f"redis faults: publisher was told {pub.failures}")
        check_exact(readers, total)
    finally:
        for r in readers:
            await r.stop()
        await pub.close()
        nginx.stop()
    for node in nodes:
        assert "Traceback" not in node.output()


def redis_cli(redis: RedisProcess, *args: str) -> Any:
    import socket

    with socket.create_connection(("127.0.0.1", redis.port), timeout=30) as s:
        s.sendall((f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode())
        return s.recv(64)


async def test_redis_restarted_empty_every_reader_is_told(
    server_factory: Servers, redis_server: RedisProcess
) -> None:
    """Redis without persistence comes back empty: the numbering restarts, and every reader,
    whatever its transport, is told (`reset` or `recovered: false`) instead of silently
    waiting for seqs that will never come; after that it follows the new numbering exactly,
    from the seq it was told. (A reader whose cursor still names the old numbering when it asks
    after new messages came is told `recovered: false` with the new top: the contract replays
    nothing across numberings.)"""
    nodes = start_nodes(server_factory, redis_server, 2)
    nginx = nginx_for(nodes)
    rng = seeded("redis-empty")
    readers = await readers_through(nginx.url, 2, rng)
    pub = Publisher(nginx.url, 150)
    try:
        await pump(pub, readers, 100)
        await until(lambda: all(r.count() >= 100 for r in readers), 60, what="the first 100 messages")
        redis_server.stop()
        told = await pub.http.post(nginx.url + "/publish", json={"ch": "n.x", "data": {"i": -1}})
        assert told.status_code == 503 and told.json()["error"] == "unavailable", told.text
        redis_server.start()
        await until(lambda: all(r.resets() for r in readers), 60, what="every reader to be told")
        await pump(pub, readers, 150)
        try:  # each channel's new numbering runs 1..25
            await until(lambda: all(r.raw[ch][-1:] == [25] for r in readers for ch in CHANNELS), 60,
                        what="every reader at the new numbering's top")
        except TimeoutError:
            for r in readers:
                print(r.describe({ch: 25 for ch in CHANNELS}))
            raise
        for r in readers:
            for ch in CHANNELS:
                said = [op for op in r.resets() if op.get("ch") == ch]
                assert said, (r.transport, ch, r.ops)
                after = said[-1]["seq"]  # a reset's position, or an unrecovered subscribe's top
                assert r.raw[ch] == [*range(1, 51), *range(after + 1, 26)], (r.transport, ch, said, r.raw[ch])
            assert all(op.get("op") != "error" for op in r.resets()), r.resets()
    finally:
        for r in readers:
            await r.stop()
        await pub.close()
        nginx.stop()
    for node in nodes:
        assert "Traceback" not in node.output()
