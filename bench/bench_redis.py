"""Redis fan-out figures on this machine: one node vs two nodes, and replay of 10,000 missed messages.

    .venv/bin/python bench/bench_redis.py [--clients 100] [--messages 2000]

Starts its own redis-server and `pulseboard serve` processes on free ports,
connects WebSocket clients spread evenly over the nodes, publishes a fixed
number of messages straight into Redis (the broker's publish script, pipelined
in batches of 100, from a child process so the publisher is not the limit) and
prints delivered envelopes per second. Then it times a client catching up
on 10,000 messages it missed. Every phase is bounded; the whole run stops by
itself in well under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from harness.servers import RedisProcess, ServerProcess
from harness.tokens import token
from pulseboard.protocol import Live, Since, dumps
from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.redis import RedisBroker
from pulseboard_server.brokers.redis_scripts import PUBLISH, Keys

ROOT = Path(__file__).resolve().parent.parent

PHASE_TIMEOUT = 40.0
HISTORY = 12_000


async def open_client(node: ServerProcess, start: dict[str, object]) -> ClientConnection:
    ws = await connect(node.ws_url, additional_headers={"Authorization": f"Bearer {token()}"},
                       subprotocols=["pulseboard.v1"], max_size=None, open_timeout=20)  # type: ignore[list-item]
    await ws.send(json.dumps({"op": "subscribe", "ch": start}))
    while True:  # up to the `subscribed` op
        msg = json.loads(await ws.recv())
        if isinstance(msg, dict) and msg.get("op") == "subscribed":
            return ws


async def count(ws: ClientConnection, ch: str, n: int, done: list[float]) -> int:
    """Read until `n` envelopes of `ch` arrived (in order); record when."""
    got = 0
    expect = None
    while got < n:
        msg = json.loads(await ws.recv())
        if isinstance(msg, list):
            for e in msg:
                if expect is not None and e["seq"] != expect:
                    raise AssertionError(f"seq {e['seq']} after {expect - 1}")
                expect = e["seq"] + 1
                got += 1
    done.append(time.perf_counter())
    return got


async def publish_burst(url: str, ch: str, n: int, batch: int = 100) -> float:
    """Publish `n` messages into Redis with the broker's own script, `batch` per round trip."""
    broker = open_broker(url, HISTORY)
    assert isinstance(broker, RedisBroker)
    await broker.start(lambda e: None, lambda c, e, s: None)
    client = Redis.from_url(url)
    sha = await client.script_load(PUBLISH)
    keys = Keys.of(broker.prefix, ch)
    head = '{"ch":' + dumps(ch) + ',"seq":'
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(lo, min(n, lo + batch)):
                tail = ',"ts":' + dumps(time.time()) + ',"data":' + dumps({"i": i, "v": i * 0.5}) + "}"
                pipe.evalsha(sha, 2, keys.meta, keys.log, uuid.uuid4().hex[:12], HISTORY, head, tail,
                             keys.live, "0")
            await pipe.execute()
    took = time.perf_counter() - t0
    await client.aclose()
    await broker.close()
    return took


async def publish_elsewhere(url: str, ch: str, n: int) -> float:
    """`publish_burst` in a child process, so the clients here don't slow the publisher down."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish-only", url, ch, str(n), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), PHASE_TIMEOUT)
    return float(out.decode().strip() or "nan")


async def fanout_phase(redis: RedisProcess, nodes: list[ServerProcess], clients: int, messages: int,
                       ch: str) -> tuple[float, int, float]:
    conns = await asyncio.gather(*(open_client(nodes[i % len(nodes)], {ch: None}) for i in range(clients)))
    done: list[float] = []
    readers = [asyncio.create_task(count(ws, ch, messages, done)) for ws in conns]
    t0 = time.perf_counter()
    pub = await publish_elsewhere(redis.url, ch, messages)
    finished, pending = await asyncio.wait(readers, timeout=PHASE_TIMEOUT)
    for task in pending:
        task.cancel()
    delivered = sum(t.result() for t in finished if not t.exception())
    elapsed = (max(done) if done else time.perf_counter()) - t0
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    if pending:
        print(f"  warning: {len(pending)} clients did not get every message within {PHASE_TIMEOUT:.0f}s")
    return delivered / elapsed, delivered, pub


async def replay_phase(redis: RedisProcess, node: ServerProcess, n: int) -> tuple[float, float]:
    ch = "bench.replay"
    broker = open_broker(redis.url, HISTORY)
    await broker.start(lambda e: None, lambda c, e, s: None)
    epoch = (await broker.replay(ch, Live())).info.epoch
    await broker.close()
    await publish_elsewhere(redis.url, ch, n)
    broker = open_broker(redis.url, HISTORY)
    await broker.start(lambda e: None, lambda c, e, s: None)
    t0 = time.perf_counter()
    rep = await broker.replay(ch, Since(0, epoch))
    broker_s = time.perf_counter() - t0
    assert rep.recovered and len(rep.msgs) == n, (rep.recovered, len(rep.msgs))
    await broker.close()
    done: list[float] = []
    t0 = time.perf_counter()
    ws = await open_client(node, {ch: {"since": 0, "epoch": epoch}})
    await asyncio.wait_for(count(ws, ch, n, done), PHASE_TIMEOUT)
    client_s = done[0] - t0
    await ws.close()
    return broker_s, client_s


def start_nodes(redis: RedisProcess, k: int) -> list[ServerProcess]:
    nodes = [ServerProcess("--broker", redis.url, "--history", str(HISTORY), "--log-level", "warning")
             for _ in range(k)]
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()
    return nodes


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--replay", type=int, default=10_000)
    p.add_argument("--publish-only", nargs=3, metavar=("URL", "CH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publish_only:
        url, ch, n = args.publish_only
        print(await publish_burst(url, ch, int(n)))
        return
    redis = RedisProcess().start()
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{args.clients} WebSocket clients, {args.messages} messages on one channel, redis-server "
              f"on 127.0.0.1:{redis.port}; {os.cpu_count()} CPUs, load average {load:.1f} at start")
        for k in (1, 2):
            nodes = start_nodes(redis, k)
            try:
                rate, delivered, pub = await fanout_phase(
                    redis, nodes, args.clients, args.messages, f"bench.{k}"
                )
            except (asyncio.TimeoutError, TimeoutError):
                print(f"  {k} node{'s' if k > 1 else ' '}: did not finish in time (is the machine busy?)")
                continue
            finally:
                for node in nodes:
                    node.stop()
            print(f"  {k} node{'s' if k > 1 else ' '}: {rate:10,.0f} delivered msgs/s ({delivered:,} "
                  f"envelopes; publishing took {pub:.2f}s = {args.messages / pub:,.0f} msgs/s)")
        (node,) = start_nodes(redis, 1)
        try:
            broker_s, client_s = await replay_phase(redis, node, args.replay)
        except (asyncio.TimeoutError, TimeoutError):
            print("replay: did not finish in time (is the machine busy?)")
            return
        finally:
            node.stop()
        print(f"replay of {args.replay:,} missed messages from Redis: broker read {broker_s * 1000:.0f} ms, "
              f"client resubscribe-to-caught-up {client_s * 1000:.0f} ms")
    finally:
        redis.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 110))
    except (asyncio.TimeoutError, TimeoutError):
        print("bench_redis: stopped after 110 s without finishing (is the machine busy?)", file=sys.stderr)
        raise SystemExit(1) from None
