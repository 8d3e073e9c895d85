"""The broker contract: one suite, every backend passes it unchanged.

The Redis backend runs against a real redis-server started for this module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from harness.servers import Feed, RedisProcess
from pulseboard.protocol import Backfill, Envelope, Live, PulseboardError, Since
from pulseboard_server.brokers import open_broker
from pulseboard_server.brokers.base import Broker, PublishItem

BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="module")
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


Factory = Callable[..., Awaitable[tuple[Broker, Feed]]]


@pytest.fixture(params=BACKENDS)
async def make_broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[Broker] = []
    prefix = "t" + uuid.uuid4().hex[:8]  # every test gets its own key space

    async def make(history: int | None = None, **options: object) -> tuple[Broker, Feed]:
        if request.param == "memory":
            url = "memory://"
        elif request.param == "sqlite":
            url = f"sqlite://{tmp_path}/store-{len(made)}.db"
        else:
            url = request.getfixturevalue("redis_proc").url + f"?prefix={prefix}"
        options.setdefault("retention", 1e12)  # the tests' ts are from 1970
        broker = open_broker(url, history, **options)
        feed = Feed()
        await broker.start(feed.on_message, feed.on_reset)
        made.append(broker)
        return broker, feed

    yield make
    for b in made:
        await b.close()


async def publish_n(broker: Broker, ch: str, n: int, start: int = 0) -> list[Envelope]:
    return [await broker.publish(ch, {"i": start + i}, 1000.0 + i) for i in range(n)]


async def test_numbering_starts_at_one_and_grows_by_one(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    envs = await publish_n(broker, "a", 5)
    assert [e.seq for e in envs] == [1, 2, 3, 4, 5]
    assert [e.data["i"] for e in envs] == [0, 1, 2, 3, 4]
    other = await broker.publish("b", {"x": 1}, 5.0)
    assert other.seq == 1  # numbering is per channel
    assert envs[0] == Envelope.from_raw(envs[0].raw)
    assert envs[0].raw == Envelope.make("a", 1, 1000.0, {"i": 0}).raw


@pytest.mark.parametrize("make_broker", ["redis"], indirect=True)  # memory is one process by design
async def test_two_handles_on_one_backend_share_the_numbering(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    second, _ = await make_broker()
    seqs = []
    for i in range(6):
        env = await (broker if i % 2 else second).publish("shared", {"i": i}, 1.0)
        seqs.append(env.seq)
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_history_window_keeps_the_last_n(make_broker: Factory) -> None:
    """An explicit --history caps every broker, the durable store included."""
    broker, _ = await make_broker(history=5)
    await publish_n(broker, "w", 12)
    info, msgs = await broker.history("w", None, 100)
    assert (info.seq, info.first) == (12, 8)
    assert [m.seq for m in msgs] == [8, 9, 10, 11, 12]
    _, msgs = await broker.history("w", None, 2)
    assert [m.seq for m in msgs] == [11, 12]
    _, msgs = await broker.history("w", 9, 2)
    assert [m.seq for m in msgs] == [10, 11]
    _, msgs = await broker.history("w", 1, 100)  # asks for more than is kept
    assert [m.seq for m in msgs] == [8, 9, 10, 11, 12]
    info, msgs = await broker.history("never-published", None, 10)
    assert (info.epoch, info.seq, msgs) == ("", 0, [])


async def test_replay_live_and_backfill(make_broker: Factory) -> None:
    broker, _ = await make_broker(history=10)
    await publish_n(broker, "r", 15)
    live = await broker.replay("r", Live())
    assert (live.recovered, live.msgs, live.info.seq) == (True, [], 15)
    back = await broker.replay("r", Backfill(3))
    assert back.recovered and [m.seq for m in back.msgs] == [13, 14, 15]
    clamped = await broker.replay("r", Backfill(100))
    assert clamped.recovered and [m.seq for m in clamped.msgs] == list(range(6, 16))
    none = await broker.replay("r", Backfill(0))
    assert none.msgs == []


async def test_replay_since(make_broker: Factory) -> None:
    broker, _ = await make_broker(history=10)
    await publish_n(broker, "s", 15)
    epoch = (await broker.replay("s", Live())).info.epoch
    assert epoch
    exact = await broker.replay("s", Since(9, epoch))
    assert exact.recovered and [m.seq for m in exact.msgs] == list(range(10, 16))
    edge = await broker.replay("s", Since(5, epoch))  # 6 is the oldest kept: nothing missing
    assert edge.recovered and [m.seq for m in edge.msgs] == list(range(6, 16))
    lost = await broker.replay("s", Since(2, epoch))  # 3..5 are gone
    assert not lost.recovered and [m.seq for m in lost.msgs] == list(range(6, 16))
    current = await broker.replay("s", Since(15, epoch))
    assert current.recovered and current.msgs == []
    ahead = await broker.replay("s", Since(99, epoch))  # a seq we never issued
    assert not ahead.recovered and ahead.msgs == []
    other = await broker.replay("s", Since(9, "another-epoch"))
    assert not other.recovered and other.msgs == [] and other.info.epoch == epoch


async def test_replay_of_a_new_channel_fixes_its_epoch(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    first = await broker.replay("fresh", Live())
    assert first.info.epoch and first.info.seq == 0 and first.recovered
    await publish_n(broker, "fresh", 2)
    again = await broker.replay("fresh", Since(0, first.info.epoch))
    assert again.recovered and [m.seq for m in again.msgs] == [1, 2]
    assert again.info.epoch == first.info.epoch


async def test_subscribe_delivers_in_order_once_and_unsubscribe_stops(make_broker: Factory) -> None:
    broker, feed = await make_broker()
    await publish_n(broker, "d", 2)  # before the subscription: not delivered
    await broker.subscribe("d")
    await broker.publish("other", {"x": 1}, 1.0)  # not subscribed: not delivered
    await publish_n(broker, "d", 20)
    await feed.wait_for(lambda: len(feed.seqs("d")) >= 20)
    assert feed.seqs("d") == list(range(3, 23))
    assert feed.seqs("other") == []
    assert feed.resets == []
    await broker.unsubscribe("d")
    await publish_n(broker, "d", 3)
    await broker.subscribe("marker")  # a later delivery proves the earlier ones were not coming
    await broker.publish("marker", {"x": 1}, 1.0)
    await feed.wait_for(lambda: bool(feed.seqs("marker")))
    assert feed.seqs("d") == list(range(3, 23))


async def test_channels_lists_epoch_and_top(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    await publish_n(broker, "c1", 3)
    await publish_n(broker, "c2", 1)
    infos = {i.ch: i for i in await broker.channels()}
    assert infos["c1"].seq == 3 and infos["c2"].seq == 1
    assert infos["c1"].epoch and infos["c1"].epoch != ""


async def test_claim_once(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    assert await broker.claim_once("ticket:abc", 30)
    assert not await broker.claim_once("ticket:abc", 30)
    assert await broker.claim_once("ticket:def", 30)
    assert await broker.claim_once("ticket:short", 0.05)
    deadline = asyncio.get_running_loop().time() + 5
    while not await broker.claim_once("ticket:short", 0.05):  # expired claims can be made again
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


async def test_status_ok_when_running(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    assert broker.status() == "ok"


async def test_idempotency_key_numbers_a_message_once_while_in_history(make_broker: Factory) -> None:
    broker, _ = await make_broker(history=3)
    first = await broker.publish("k", {"i": 1}, 1.0, key="run-1")
    again = await broker.publish("k", {"i": 1}, 2.0, key="run-1")  # a retry after a lost answer
    assert (again.seq, again.ts, again.data) == (first.seq, 1.0, {"i": 1}) == (1, 1.0, {"i": 1})
    assert (await broker.publish("k", {"i": 2}, 3.0, key="run-2")).seq == 2
    assert (await broker.publish("k", {"i": 3}, 4.0)).seq == 3  # no key: always numbered
    assert (await broker.publish("other", {"i": 1}, 1.0, key="run-1")).seq == 1  # keys are per channel
    await broker.publish("k", {"i": 4}, 5.0, key="run-4")
    await broker.publish("k", {"i": 5}, 6.0, key="run-5")
    assert (await broker.publish("k", {"i": 5}, 6.0, key="run-5")).seq == 5
    _, kept = await broker.history("k", 0, 10)
    if kept[0].seq == 1:  # a durable store may keep more than --history: seq 1 is still there
        assert (await broker.publish("k", {"i": 1}, 7.0, key="run-1")).seq == 1
    else:  # seq 1 left history: its key is forgotten, the message is numbered anew
        assert (await broker.publish("k", {"i": 1}, 7.0, key="run-1")).seq == 6
        info, msgs = await broker.history("k", None, 10)
        assert info.seq == 6 and [m.data["i"] for m in msgs] == [4, 5, 1]


async def test_a_repeated_key_is_not_fanned_out_again(make_broker: Factory) -> None:
    broker, feed = await make_broker()
    await broker.publish("f", {"i": 0}, 1.0, key="a")
    await broker.subscribe("f")
    await broker.publish("f", {"i": 0}, 1.0, key="a")
    await broker.publish("f", {"i": 1}, 2.0, key="b")
    await broker.publish("f", {"i": 1}, 2.0, key="b")
    await broker.publish("f", {"i": 2}, 3.0)
    await feed.wait_for(lambda: 3 in feed.seqs("f"))
    assert feed.seqs("f") == [2, 3] and feed.resets == []


# --- downsampled history --------------------------------------------------------------


def brute_force(envs: list[Envelope], t0: float, t1: float, nb: int) -> dict[int, dict[str, tuple[float, float]]]:
    """Per bucket, each numeric field's (min, max), from every envelope."""
    out: dict[int, dict[str, tuple[float, float]]] = {}
    width = (t1 - t0) / nb
    for e in envs:
        if not t0 <= e.ts <= t1:
            continue
        b = min(nb - 1, int((e.ts - t0) / width))
        fields = out.setdefault(b, {})
        for k, v in e.data.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                lo, hi = fields.get(k, (v, v))
                fields[k] = (min(lo, v), max(hi, v))
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_downsampled_range_keeps_every_buckets_min_and_max(make_broker: Factory, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    broker, _ = await make_broker(history=3000)
    envs = []
    t = 1000.0
    for i in range(2500):
        t += rnd.choice([0.01, 0.5, 1.0, 3.0])  # uneven spacing: some buckets are empty
        data: dict[str, object] = {"loss": rnd.gauss(0, 1) * (1 + i % 7), "acc": rnd.random(), "tag": "x"}
        if i % 5 == 0:
            data["lr"] = rnd.choice([0.1, 0.01, 0.1])  # ties and a field some messages lack
        envs.append(await broker.publish("ds", data, t))
    t0, t1, points = envs[100].ts, envs[2300].ts, 160
    info, msgs, down = await broker.history_range("ds", t0, t1, points)
    inside = [e for e in envs if t0 <= e.ts <= t1]
    assert down and info.seq == 2500
    assert 0 < len(msgs) <= points
    assert [m.seq for m in msgs] == sorted({m.seq for m in msgs})
    assert all(m == envs[m.seq - 1] for m in msgs)  # real envelopes, unchanged
    nb = max(1, min(points // 4, points // (2 + 2 * 3)))  # three numeric fields
    want = brute_force(inside, t0, t1, nb)
    got = brute_force(msgs, t0, t1, nb)
    assert got == want  # the picks hold exactly each bucket's extremes
    assert msgs[0] == inside[0] and msgs[-1] == inside[-1]
    _, every, down_all = await broker.history_range("ds", None, None, 100_000)
    assert not down_all and [m.seq for m in every] == list(range(1, 2501))
    _, few, _ = await broker.history_range("ds", None, None, 4)
    assert 0 < len(few) <= 4
    _, none, d = await broker.history_range("ds", 0.0, 10.0, 100)
    assert none == [] and not d


async def test_reads_never_create_channels(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    for i in range(50):
        name = f"ghost.{i}"
        await broker.subscribe(name)
        rep = await broker.replay(name, Backfill(10))
        assert rep.info.seq == 0 and rep.msgs == [] and rep.info.epoch
        info, msgs = await broker.history(name, None, 10)
        assert (info.epoch, msgs) == ("", [])
        info, msgs, _ = await broker.history_range(name, None, None, 100)
        assert (info.epoch, msgs) == ("", [])
        await broker.unsubscribe(name)
    assert [i.ch for i in await broker.channels()] == []
    env = await broker.publish("ghost.3", {"x": 1}, 1.0)
    assert env.seq == 1
    assert [i.ch for i in await broker.channels()] == ["ghost.3"]


async def test_channel_limit_counts_publishes_only(make_broker: Factory) -> None:
    limit = 5
    broker, _ = await make_broker(max_channels=limit)
    for i in range(200):
        await broker.replay(f"read.{i}", Live())
    for i in range(limit):
        await broker.publish(f"w.{i}", {"x": i}, 1.0)
    with pytest.raises(PulseboardError) as err:
        await broker.publish("w.extra", {"x": 1}, 1.0)
    assert err.value.code == "too_large"
    await broker.publish("w.0", {"x": 2}, 1.0)  # existing channels go on


@pytest.mark.parametrize("make_broker", ["sqlite"], indirect=True)  # memory/redis: tests/log/test_publish_key.py
async def test_sqlite_idempotency_key_survives_a_restart(make_broker: Factory, tmp_path: Path) -> None:
    broker, _ = await make_broker()
    url = broker.url
    first = await broker.publish("k", {"x": 1}, 1.0, key="batch-1/0")  # type: ignore[call-arg]
    again, other = await asyncio.gather(
        broker.publish("k", {"x": 1}, 1.0, key="batch-1/0"),  # type: ignore[call-arg]
        broker.publish("k", {"x": 2}, 1.0, key="batch-1/1"),  # type: ignore[call-arg]
    )
    assert (first.seq, again.seq, other.seq) == (1, 1, 2) and again == first
    await broker.close()
    reopened = open_broker(url, 1000, retention=1e12)
    await reopened.start(lambda e: None, lambda c, e, s: None)
    try:
        retried = await reopened.publish("k", {"x": 1}, 1.0, key="batch-1/0")  # type: ignore[call-arg]
        fresh = await reopened.publish("k", {"x": 3}, 1.0)
        assert retried == first and fresh.seq == 3
    finally:
        await reopened.close()


async def test_publish_many_numbers_like_one_by_one_and_delivers_in_order(make_broker: Factory) -> None:
    broker, feed = await make_broker()
    await broker.subscribe("m.a")
    await broker.subscribe("m.b")
    await publish_n(broker, "m.a", 2)
    chs = ["m.a", "m.b", "m.a", "m.a", "m.b"]
    items: list[PublishItem] = [(ch, {"i": i}, 100.0 + i, None) for i, ch in enumerate(chs)]
    envs = await broker.publish_many(items)
    assert [(e.ch, e.seq, e.data["i"], e.ts) for e in envs] == [
        ("m.a", 3, 0, 100.0), ("m.b", 1, 1, 101.0), ("m.a", 4, 2, 102.0), ("m.a", 5, 3, 103.0), ("m.b", 2, 4, 104.0)]
    await feed.wait_for(lambda: len(feed.seqs("m.a")) >= 5 and len(feed.seqs("m.b")) >= 2)
    assert feed.seqs("m.a") == [1, 2, 3, 4, 5] and feed.seqs("m.b") == [1, 2]
    _, stored = await broker.history("m.a", 0, 100)
    assert [e.raw for e in stored[2:]] == [e.raw for e in envs if e.ch == "m.a"]
    assert await broker.publish_many([]) == []


async def test_history_default_is_per_broker(make_broker: Factory, request: pytest.FixtureRequest) -> None:
    """Without --history: 1000 per channel on memory:// and redis://, no count limit on sqlite://."""
    broker, _ = await make_broker()
    await broker.publish_many([("d", {"i": i}, 1000.0 + i, None) for i in range(1005)])
    info, msgs = await broker.history("d", 0, 1000)
    kind = request.node.callspec.params["make_broker"]
    assert (info.seq, info.first) == (1005, 1 if kind == "sqlite" else 6)
    assert len(msgs) == 1000  # `limit` stays bounded by the default either way


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Await an observable state (the background sweeps run every 0.5 s here)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_retention_drops_old_messages_and_keeps_new(make_broker: Factory) -> None:
    broker, _ = await make_broker(retention=3.0)
    now = time.time()
    old = [await broker.publish("ret", {"i": i}, now - 1000 + i, key=f"k{i}") for i in range(3)]
    new = [await broker.publish("ret", {"i": i}, now + 3600 + i) for i in range(3, 6)]
    aging = await broker.publish("aging", {"i": 0}, now - 1.0)  # expires while nobody publishes

    async def trimmed() -> bool:
        info, _ = await broker.history("ret", 0, 10)
        return info.first == 4

    async def aged() -> bool:
        info, _ = await broker.history("aging", 0, 10)
        return info.first == 2

    await until("old messages dropped", trimmed)
    await until("an idle channel's old message dropped", aged)
    info, msgs = await broker.history("ret", 0, 10)
    assert (info.seq, info.first) == (6, 4)
    assert msgs == new  # the new ones stay, unchanged
    info, msgs = await broker.history("aging", None, 10)
    assert (info.seq, info.first, msgs) == (1, 2, []) and aging.seq == 1
    epoch = (await broker.replay("ret", Live())).info.epoch
    lost = await broker.replay("ret", Since(1, epoch))  # 2 and 3 are gone
    assert not lost.recovered and lost.msgs == new
    exact = await broker.replay("ret", Since(old[-1].seq, epoch))
    assert exact.recovered and exact.msgs == new
    _, msgs, _ = await broker.history_range("ret", None, None, 100)
    assert msgs == new
    again = await broker.publish("ret", {"i": 0}, now + 7200, key="k0")  # its first message left history
    assert again.seq == 7


@pytest.mark.parametrize("make_broker", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_retention_sweeps_on_several_nodes_agree(make_broker: Factory) -> None:
    """Every node sweeps every channel; together they drop exactly the old head, no more."""
    nodes = [(await make_broker(history=50, retention=3.0))[0] for _ in range(3)]
    now = time.time()
    for i in range(40):  # interleaved old and new publishes through all nodes
        await nodes[i % 3].publish("multi", {"i": i}, now - 1000 if i < 30 else now + 3600)

    async def trimmed() -> bool:
        info, _ = await nodes[0].history("multi", 0, 100)
        return info.first == 31

    await until("the old head dropped", trimmed)
    for node in nodes:
        info, msgs = await node.history("multi", 0, 100)
        assert (info.seq, info.first) == (40, 31)
        assert [m.data["i"] for m in msgs] == list(range(30, 40))
    assert (await nodes[1].publish("multi", {"i": 40}, now + 3600)).seq == 41


# --- deleting a channel (the "first hour" issue) and run records (the runs issue) ---------------


async def test_delete_drops_history_and_resets_subscribers_to_a_new_epoch(make_broker: Factory) -> None:
    broker, feed = await make_broker()
    await publish_n(broker, "d", 5)
    await publish_n(broker, "keep", 2)
    await broker.subscribe("d")
    old = (await broker.replay("d", Live())).info
    assert await broker.delete("d") is True
    await feed.wait_for(lambda: bool(feed.resets))
    (ch, epoch, seq), = feed.resets
    assert (ch, seq) == ("d", 0) and epoch != old.epoch
    assert [i.ch for i in await broker.channels()] == ["keep"]
    _, msgs = await broker.history("d", None, 100)
    assert msgs == []
    resumed = await broker.replay("d", Since(5, old.epoch))
    assert resumed.recovered is False and resumed.msgs == []  # never a silent gap
    again = await broker.publish("d", {"i": 99}, 2000.0)
    assert again.seq == 1
    await feed.wait_for(lambda: 1 in feed.seqs("d"))
    assert (await broker.replay("d", Live())).info.epoch == epoch
    assert [i.ch for i in await broker.channels()] == ["d", "keep"]
    assert await broker.delete("never-published") is False
    _, kept = await broker.history("keep", None, 100)
    assert len(kept) == 2


async def test_run_records_are_kept_listed_and_deleted(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    rec = {"project": "p", "name": "a", "config": {"lr": 0.1}, "status": "running"}
    await broker.run_put("p", "a", rec)
    await broker.run_put("p", "b", {**rec, "name": "b"})
    await broker.run_put("q", "a", {**rec, "project": "q"})
    assert await broker.run_get("p", "a") == rec
    assert sorted(r["name"] for r in await broker.run_list("p")) == ["a", "b"]
    await broker.run_put("p", "a", {**rec, "status": "finished"})
    assert (await broker.run_get("p", "a") or {})["status"] == "finished"
    assert await broker.run_delete("p", "a") is True
    assert await broker.run_delete("p", "a") is False
    assert [r["name"] for r in await broker.run_list("p")] == ["b"]
    assert await broker.run_list("nothing") == []


async def test_runs_per_project_are_bounded(make_broker: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    from pulseboard_server.brokers import base, redis_runs

    monkeypatch.setattr(base, "MAX_RUNS_PER_PROJECT", 3)
    monkeypatch.setattr(redis_runs, "MAX_RUNS_PER_PROJECT", 3)
    broker, _ = await make_broker()
    for i in range(3):
        await broker.run_put("p", f"r{i}", {"name": f"r{i}"})
    with pytest.raises(PulseboardError) as err:
        await broker.run_put("p", "r3", {"name": "r3"})
    assert err.value.code == "too_large" and "delete old runs" in err.value.detail
    await broker.run_put("p", "r0", {"name": "r0", "status": "finished"})  # existing runs go on
    await broker.run_put("other", "r3", {"name": "r3"})


@pytest.mark.parametrize("make_broker", ["sqlite"], indirect=True)
async def test_sqlite_keeps_runs_and_deleted_epochs_across_a_restart(make_broker: Factory) -> None:
    broker, _ = await make_broker()
    url = broker.url
    await publish_n(broker, "d", 3)
    old = (await broker.replay("d", Live())).info.epoch
    await broker.delete("d")
    fresh = (await broker.replay("d", Live())).info.epoch
    await broker.run_put("p", "a", {"name": "a", "config": {"lr": 0.1}})
    await broker.close()
    reopened = open_broker(url, None, retention=1e12)
    await reopened.start(lambda e: None, lambda c, e, s: None)
    try:
        assert await reopened.run_list("p") == [{"name": "a", "config": {"lr": 0.1}}]
        info = (await reopened.replay("d", Live())).info
        assert info.epoch == fresh != old and info.seq == 0
        assert (await reopened.publish("d", {"x": 1}, 1.0)).seq == 1
    finally:
        await reopened.close()


@pytest.mark.parametrize("make_broker", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_redis_publish_many_is_one_round_trip_not_one_per_message(
    make_broker: Factory, redis_proc: RedisProcess
) -> None:
    """Redis counts the reads it does on client sockets: a pipelined batch of 200 is a few, not 200."""
    from redis.asyncio import Redis

    broker, _ = await make_broker()
    await broker.publish_many([("rt", {"i": -1}, 1.0, None), ("rt", {"i": -2}, 2.0, None)])  # script loaded
    probe = Redis.from_url(redis_proc.url)
    try:
        before = (await probe.info("stats"))["total_reads_processed"]
        envs = await broker.publish_many([("rt", {"i": i}, 10.0 + i, None) for i in range(200)])
        reads = (await probe.info("stats"))["total_reads_processed"] - before
    finally:
        await probe.aclose()
    assert [e.seq for e in envs] == list(range(3, 203))
    assert reads < 20, reads  # one round trip per message was >= 200
