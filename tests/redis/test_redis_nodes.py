"""Several `pulseboard serve` processes on one Redis (or a Redis Cluster), real clients."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
from nodes_support import Recording, Servers, health, publish, redis_nodes, until
from redis.asyncio import Redis

from harness.channels import metric
from harness.servers import RedisProcess, ServerProcess, wait_until
from harness.tokens import token
from harness.ws import open_ws, recv_envelopes, subscribe
from pulseboard.protocol import dumps
from pulseboard_server.brokers.redis_scripts import PUBLISH, Keys


async def test_three_nodes_one_numbering(server_factory: Servers, redis_server: RedisProcess) -> None:
    nodes = redis_nodes(server_factory, redis_server.url, 3)
    channels = ["x.a", "x.b"]
    clients = [await open_ws(nodes[i % 3]) for i in range(6)]
    for ws in clients:
        await subscribe(ws, {ch: None for ch in channels})
    per_node = 40

    def pump(node: ServerProcess, k: int) -> None:
        for j in range(0, per_node, 4):
            for ch in channels:
                publish(node, ch, 4, start=k * 1000 + j)

    threads = [threading.Thread(target=pump, args=(node, k)) for k, node in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = 3 * per_node
    streams = []
    for ws in clients:
        got = await recv_envelopes(ws, total * len(channels))
        per_ch = {ch: [(e["seq"], e["data"]["i"]) for e in got if e["ch"] == ch] for ch in channels}
        for ch in channels:
            assert [s for s, _ in per_ch[ch]] == list(range(1, total + 1)), ch
        streams.append(per_ch)
        await ws.close()
    assert all(s == streams[0] for s in streams)  # the identical sequence on every node
    sent = sorted(k * 1000 + j for k in range(3) for j in range(per_node))
    assert sorted(i for _, i in streams[0]["x.a"]) == sent


async def test_kill_9_node_clients_resume_on_another(
    server_factory: Servers, redis_server: RedisProcess
) -> None:
    a, b = redis_nodes(server_factory, redis_server.url, 2)
    channels = ["k.1", "k.2"]
    clients = [Recording(channels, url=a.url, token=token()) for _ in range(3)]
    for c in clients:
        c.run()
    await until(lambda: all(c.subscribed(ch) for c in clients for ch in channels), what="subscriptions")
    total = 300
    done = threading.Event()

    def pump() -> None:
        for j in range(0, total, 3):
            for ch in channels:
                publish(b, ch, 3, start=j)
        done.set()

    t = threading.Thread(target=pump)
    t.start()
    await until(lambda: all(len(c.seen.get("k.1", [])) >= 30 for c in clients), what="the stream to flow")
    a.proc.kill()  # type: ignore[union-attr]  # kill -9, mid-stream
    a.proc.wait()  # type: ignore[union-attr]
    for c in clients:
        c.url = b.url  # the load balancer now sends them to b
    await until(lambda: done.is_set(), 60, what="the publisher")
    t.join()
    await until(lambda: all(len(c.seen.get(ch, [])) >= total for c in clients for ch in channels),
                what="every message on every client")
    for c in clients:
        assert c.node == "n1" and c.connects == 2
        for ch in channels:
            assert c.seen[ch] == list(range(1, total + 1))  # nothing lost, nothing doubled
            assert c.data[ch] == [{"i": i} for i in range(total)]
            assert all(op["recovered"] for op in c.subscribed(ch))
        assert not c.gaps
        await c.stop()


async def run_restart(server_factory: Servers, redis: RedisProcess, aof: bool) -> None:
    (node,) = redis_nodes(server_factory, redis.url, 1)
    client = Recording(["r"], url=node.url, token=token())
    client.run()
    await until(lambda: client.subscribed("r"), what="subscription")
    publish(node, "r", 10)
    await until(lambda: len(client.seen.get("r", [])) == 10)
    old_epoch = client.positions["r"][0]
    redis.stop()
    await asyncio.to_thread(wait_until, lambda: health(node)["status"] == "degraded", 15)
    r = httpx.post(node.url + "/publish", json={"ch": "r", "data": {"i": -1}},
                   headers={"Authorization": f"Bearer {token()}"}, timeout=10)
    assert r.status_code == 503 and r.json()["error"] == "unavailable"  # not silence
    async with await open_ws(node) as ws:  # a publish over the WebSocket is refused the same way
        await ws.send(json.dumps({"op": "publish", "ch": "r", "data": {"i": -2}, "id": 1}))
        while True:
            op = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if op.get("op") == "error":
                break
        assert op["code"] == "unavailable" and op["id"] == 1
    assert metric(node, "pulseboard_broker_up") == 0
    assert metric(node, "pulseboard_broker_errors_total") >= 1
    redis.start()  # same port (and, with AOF, same data directory)
    await asyncio.to_thread(wait_until, lambda: health(node)["status"] == "ok", 15)
    if not aof:
        await until(lambda: client.gaps, what="the client to be told")
        gap = client.gaps[0]
        assert gap.epoch != old_epoch and gap.reason == "numbering restarted"
    publish(node, "r", 5, start=10)
    await until(lambda: len(client.seen["r"]) == 15)
    await client.stop()
    async with await open_ws(node) as ws:
        (sub,) = await subscribe(ws, {"r": {"since": 5, "epoch": old_epoch}})
        if aof:
            assert sub["recovered"] is True and sub["epoch"] == old_epoch
            assert [e["seq"] for e in await recv_envelopes(ws, 10)] == list(range(6, 16))
        else:
            assert sub["recovered"] is False and sub["epoch"] != old_epoch and sub["seq"] == 5
    if aof:
        assert client.seen["r"] == list(range(1, 16)) and not client.gaps
        assert client.positions["r"] == (old_epoch, 15)
    else:
        assert client.seen["r"] == [*range(1, 11), *range(1, 6)]
        assert client.positions["r"][0] != old_epoch
    assert [d["i"] for d in client.data["r"]] == list(range(15))  # the refused publishes never appear


async def test_redis_restart_without_persistence_tells_clients(
    server_factory: Servers, redis_factory: Any
) -> None:
    await run_restart(server_factory, redis_factory(), aof=False)


async def test_redis_restart_with_aof_resumes_exactly(server_factory: Servers, redis_factory: Any) -> None:
    await run_restart(server_factory, redis_factory(aof=True), aof=True)


async def test_node_repairs_a_cut_pubsub_connection(
    server_factory: Servers, redis_server: RedisProcess
) -> None:
    (node,) = redis_nodes(server_factory, redis_server.url, 1)
    async with await open_ws(node) as ws:
        await subscribe(ws, {"cut": None})
        publish(node, "cut", 1)
        assert [e["seq"] for e in await recv_envelopes(ws, 1)] == [1]
        r = Redis.from_url(redis_server.url)
        keys = Keys.of("pb", "cut")
        async with r.pipeline(transaction=True) as tx:  # cut it, then publish what it can't hear
            tx.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            for i in range(1, 21):
                tail = ',"ts":1.0,"data":' + dumps({"i": i}) + "}"
                head = '{"ch":"cut","seq":'
                tx.eval(PUBLISH, 2, keys.meta, keys.log, "e", 1000, head, tail, keys.live, "0")
            await tx.execute()
        await r.aclose()
        got = await recv_envelopes(ws, 20)
        publish(node, "cut", 1, start=21)
        got += await recv_envelopes(ws, 1)
        assert [e["seq"] for e in got] == list(range(2, 23))
        assert [e["data"]["i"] for e in got] == list(range(1, 22))
    assert metric(node, "pulseboard_gaps_repaired_total") >= 1
    assert health(node)["status"] == "ok"


async def test_cluster_exact_resume(server_factory: Servers, redis_cluster: Any) -> None:
    a, b = redis_nodes(server_factory, redis_cluster.url, 2)
    channels = [f"cl.{i}" for i in range(6)]
    owners = {ch: redis_cluster.owner(Keys.of("pb", ch).meta) for ch in channels}
    assert len(set(owners.values())) >= 2  # the channels really are spread over shards
    first = Recording(channels, url=a.url, token=token())
    first.run()
    await until(lambda: all(first.subscribed(ch) for ch in channels), what="subscriptions")

    def on_own_shard(ch: str) -> bool:  # sharded pub/sub: the subscription sits on the channel's shard
        live = Keys.of("pb", ch).live
        return bool(redis_cluster.cli(owners[ch], "pubsub", "shardnumsub", live).split() == [live, "1"])

    await until(lambda: all(on_own_shard(ch) for ch in channels), what="shard subscriptions")
    for ch in channels:
        publish(b, ch, 10)
    await until(lambda: all(len(first.seen.get(ch, [])) == 10 for ch in channels))
    await first.stop()
    positions = dict(first.positions)
    for ch in channels:
        publish(a, ch, 10, start=10)
    second = Recording(channels, url=b.url, token=token())
    second.positions.update(positions)  # resume: subscribe with since/epoch per channel
    second.run()
    await until(lambda: all(len(second.seen.get(ch, [])) == 10 for ch in channels))
    for ch in channels:
        assert first.seen[ch] == list(range(1, 11))
        assert second.seen[ch] == list(range(11, 21))
        assert [d["i"] for d in second.data[ch]] == list(range(10, 20))
        assert second.subscribed(ch)[0]["recovered"] is True
    assert not second.gaps
    await second.stop()


async def test_cluster_slot_moving_to_another_shard_keeps_the_stream(
    server_factory: Servers, redis_cluster: Any
) -> None:
    """Resharding moves a channel's slot: Redis drops the node's shard subscription; the node follows."""
    (node,) = redis_nodes(server_factory, redis_cluster.url, 1)
    keys = Keys.of("pb", "mv")
    client = Recording(["mv"], url=node.url, token=token())
    client.run()
    await until(lambda: client.subscribed("mv"), what="subscription")
    publish(node, "mv", 5)
    await until(lambda: len(client.seen.get("mv", [])) == 5)
    src = redis_cluster.owner(keys.meta)
    dst = next(n.port for n in redis_cluster.nodes if n.port != src)
    slot = redis_cluster.cli(src, "cluster", "keyslot", keys.meta).strip()
    src_id = redis_cluster.cli(src, "cluster", "myid").strip()
    dst_id = redis_cluster.cli(dst, "cluster", "myid").strip()
    redis_cluster.cli(dst, "cluster", "setslot", slot, "importing", src_id)
    redis_cluster.cli(src, "cluster", "setslot", slot, "migrating", dst_id)
    moving = redis_cluster.cli(src, "cluster", "getkeysinslot", slot, "100").split()
    assert keys.meta in moving and keys.log in moving
    redis_cluster.cli(src, "migrate", "127.0.0.1", str(dst), "", "0", "5000", "keys", *moving)
    for n in redis_cluster.nodes:
        redis_cluster.cli(n.port, "cluster", "setslot", slot, "node", dst_id)
    assert redis_cluster.owner(keys.meta) == dst

    def listening_on(port: int) -> bool:
        out = redis_cluster.cli(port, "pubsub", "shardnumsub", keys.live).split()
        return bool(out == [keys.live, "1"])

    await until(lambda: listening_on(dst), what="the node to follow the slot")
    publish(node, "mv", 5, start=5)
    await until(lambda: len(client.seen["mv"]) == 10)
    assert client.seen["mv"] == list(range(1, 11)) and not client.gaps
    assert not listening_on(src)
    assert health(node)["status"] == "ok"
    await client.stop()
