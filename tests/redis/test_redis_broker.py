"""The Redis broker in-process against real redis-server: gap repair, outages, epochs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from harness.servers import Feed, RedisProcess, free_port
from pulseboard.protocol import Envelope, Live, Since, dumps
from pulseboard_server.brokers import BrokerUnavailable, open_broker
from pulseboard_server.brokers.redis import RedisBroker, split_url
from pulseboard_server.brokers.redis_scripts import PUBLISH, Keys
from pulseboard_server.metrics import Metrics


async def until(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    made: list[RedisBroker] = []

    async def start(url: str, history: int = 1000) -> tuple[RedisBroker, Feed, Metrics]:
        broker = open_broker(url, history)
        assert isinstance(broker, RedisBroker)
        metrics = Metrics()
        broker.attach_metrics(metrics)
        feed = Feed()
        await broker.start(feed.on_message, feed.on_reset)
        made.append(broker)
        return broker, feed, metrics

    yield start
    for b in made:
        await b.close()


def raw_publish_args(prefix: str, ch: str, i: int, live: str | None = None) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the broker's publish script, optionally announcing on another channel."""
    keys = Keys.of(prefix, ch)
    head = '{"ch":' + dumps(ch) + ',"seq":'
    tail = ',"ts":1.0,"data":' + dumps({"i": i}) + "}"
    return [keys.meta, keys.log], ["unused-epoch", 1000, head, tail, live or keys.live, "0"]


def test_split_url() -> None:
    assert split_url("redis://h:1/2?prefix=x") == ("redis://h:1/2", False, "x")
    assert split_url("redis+cluster://h:1,h:2") == ("redis://h:1", True, "pb")
    assert split_url("rediss://u:p@h:1/0?cluster=1&ssl_cert_reqs=none") == (
        "rediss://u:p@h:1?ssl_cert_reqs=none", True, "pb")


async def test_start_fails_fast_when_redis_is_unreachable() -> None:
    broker = open_broker(f"redis://127.0.0.1:{free_port()}/0", 100)
    with pytest.raises(Exception) as err:
        await asyncio.wait_for(broker.start(lambda e: None, lambda c, e, s: None), 10)
    assert "connect" in str(err.value).lower()
    assert broker.status() == "degraded"


async def test_a_missed_message_is_repaired_before_the_next(started: Any, redis_server: RedisProcess) -> None:
    broker, feed, metrics = await started(redis_server.url)
    await broker.subscribe("g")
    await broker.publish("g", {"i": 0}, 1.0)
    await feed.wait_for(lambda: feed.seqs("g") == [1])
    r = Redis.from_url(redis_server.url)
    keys, args = raw_publish_args("pb", "g", 1, live="pb:elsewhere")  # stored, never announced
    await r.eval(PUBLISH, 2, *keys, *args)
    await r.aclose()
    await broker.publish("g", {"i": 2}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("g")) >= 3)
    assert feed.seqs("g") == [1, 2, 3]
    assert [e.data["i"] for e in feed.msgs] == [0, 1, 2]
    assert metrics.gaps_repaired._value.get() == 1  # type: ignore[attr-defined]
    assert feed.resets == []


async def test_pubsub_cut_repairs_from_history(started: Any, redis_server: RedisProcess) -> None:
    """CLIENT KILL of the pub/sub connection, with publishes it can't see; all arrive once."""
    broker, feed, metrics = await started(redis_server.url)
    await broker.subscribe("cut")
    await broker.publish("cut", {"i": 0}, 1.0)
    await feed.wait_for(lambda: feed.seqs("cut") == [1])
    r = Redis.from_url(redis_server.url)
    async with r.pipeline(transaction=True) as tx:  # the kill and the publishes in one step
        tx.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        for i in range(1, 21):
            keys, args = raw_publish_args("pb", "cut", i)
            tx.eval(PUBLISH, 2, *keys, *args)
        await tx.execute()
    await r.aclose()
    await feed.wait_for(lambda: len(feed.seqs("cut")) >= 21)
    await broker.publish("cut", {"i": 21}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("cut")) >= 22)
    assert feed.seqs("cut") == list(range(1, 23))
    assert [e.data["i"] for e in feed.msgs] == list(range(22))
    assert metrics.gaps_repaired._value.get() >= 1  # type: ignore[attr-defined]
    assert metrics.broker_errors._value.get() >= 1  # type: ignore[attr-defined]
    assert feed.resets == []
    assert broker.status() == "ok"


async def test_trimmed_gap_becomes_a_reset(started: Any, redis_server: RedisProcess) -> None:
    broker, feed, _ = await started(redis_server.url, history=5)
    await broker.subscribe("t")
    await broker.publish("t", {"i": 0}, 1.0)
    await feed.wait_for(lambda: feed.seqs("t") == [1])
    r = Redis.from_url(redis_server.url)
    for i in range(1, 10):  # 2..10 never announced; the stream keeps 6..10
        keys, args = raw_publish_args("pb", "t", i, live="pb:elsewhere")
        args[1] = 5
        await r.eval(PUBLISH, 2, *keys, *args)
    await r.aclose()
    await broker.publish("t", {"i": 10}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("t")) >= 6)
    epoch = (await broker.replay("t", Live())).info.epoch
    assert feed.resets == [("t", epoch, 6)]
    assert feed.seqs("t") == [1, 7, 8, 9, 10, 11]


async def test_outage_then_restart_without_persistence(started: Any, redis_factory: Any) -> None:
    redis = redis_factory()
    broker, feed, metrics = await started(redis.url)
    await broker.subscribe("o")
    for i in range(3):
        await broker.publish("o", {"i": i}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("o")) == 3)
    old = (await broker.replay("o", Live())).info.epoch
    redis.stop()
    await until(lambda: broker.status() == "degraded")
    with pytest.raises(BrokerUnavailable) as err:
        await broker.publish("o", {"i": 99}, 1.0)
    assert err.value.code == "unavailable"
    with pytest.raises(BrokerUnavailable):
        await broker.replay("o", Since(3, old))
    redis.start()  # same port, no data
    await feed.wait_for(lambda: bool(feed.resets))
    ch, new, seq = feed.resets[0]
    assert (ch, seq) == ("o", 0) and new != old
    await until(lambda: broker.status() == "ok")
    env = await broker.publish("o", {"i": 3}, 1.0)
    assert env.seq == 1
    await feed.wait_for(lambda: len(feed.seqs("o")) == 4)
    assert feed.seqs("o") == [1, 2, 3, 1]
    resumed = await broker.replay("o", Since(3, old))
    assert not resumed.recovered and resumed.info.epoch == new and resumed.msgs == []
    assert metrics.broker_errors._value.get() >= 1  # type: ignore[attr-defined]


async def test_outage_then_restart_with_aof_keeps_the_epoch(started: Any, redis_factory: Any) -> None:
    redis = redis_factory(aof=True)
    broker, feed, _ = await started(redis.url)
    await broker.subscribe("p")
    for i in range(3):
        await broker.publish("p", {"i": i}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("p")) == 3)
    epoch = (await broker.replay("p", Live())).info.epoch
    redis.stop()
    await until(lambda: broker.status() == "degraded")
    redis.start()
    await until(lambda: broker.status() == "ok")
    env = await broker.publish("p", {"i": 3}, 1.0)
    assert env.seq == 4
    await feed.wait_for(lambda: len(feed.seqs("p")) == 4)
    assert feed.seqs("p") == [1, 2, 3, 4] and feed.resets == []
    resumed = await broker.replay("p", Since(2, epoch))
    assert resumed.recovered and [m.seq for m in resumed.msgs] == [3, 4]


async def test_wire_payload_is_the_envelope(started: Any, redis_server: RedisProcess) -> None:
    """What other tools see on the live channel: '<epoch> <envelope JSON>'."""
    broker, _, _ = await started(redis_server.url + "?prefix=w" + uuid.uuid4().hex[:6])
    r = Redis.from_url(redis_server.url, decode_responses=True)
    ps = r.pubsub()
    await ps.subscribe(Keys.of(broker.prefix, "x").live)
    await ps.get_message(timeout=5)
    env = await broker.publish("x", {"v": 1.5}, 7.0)
    msg = None
    while msg is None:
        msg = await ps.get_message(ignore_subscribe_messages=True, timeout=5)
    epoch, _, raw = msg["data"].partition(" ")
    assert raw == env.raw and json.loads(raw) == {"ch": "x", "seq": 1, "ts": 7.0, "data": {"v": 1.5}}
    assert epoch == (await broker.replay("x", Live())).info.epoch
    await ps.aclose()  # type: ignore[no-untyped-call]
    await r.aclose()


async def test_a_listener_crash_surfaces_at_once_and_loses_nothing(
    started: Any, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    broker, feed, metrics = await started(redis_server.url)
    states: list[str] = []
    crash = {"armed": True}
    deliver = feed.on_message

    def flaky(env: Envelope) -> None:
        if env.seq == 2 and crash["armed"]:
            crash["armed"] = False
            raise RuntimeError("bug in a callback")
        deliver(env)

    broker.delivery.on_message = flaky
    real_state = broker.delivery.on_state

    def spy(link: Any, up: bool, error: BaseException | None) -> None:
        real_state(link, up, error)
        states.append(broker.status())

    for link in broker.delivery.links.values():
        link.on_state = spy
    await broker.subscribe("crash")
    for i in range(3):
        await broker.publish("crash", {"i": i}, 1.0)
    await feed.wait_for(lambda: len(feed.seqs("crash")) >= 3)
    assert feed.seqs("crash") == [1, 2, 3]  # the message whose delivery crashed came again, once
    assert "degraded" in states  # said at once, not at shutdown
    assert any("crashed" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert metrics.broker_errors._value.get() >= 1  # type: ignore[attr-defined]
    await until(lambda: broker.status() == "ok")


async def test_a_foreign_message_on_a_live_channel_is_ignored(
    started: Any, redis_server: RedisProcess
) -> None:
    broker, feed, _ = await started(redis_server.url)
    await broker.subscribe("f")
    r = Redis.from_url(redis_server.url)
    await r.publish(Keys.of("pb", "f").live, "not an envelope")
    await r.aclose()
    await broker.publish("f", {"i": 0}, 1.0)
    await feed.wait_for(lambda: feed.seqs("f") == [1])
    assert broker.status() == "ok" and feed.resets == []


async def published(url: str, items: list[Any], history: int, max_bytes: int, many: bool) -> Any:
    """Publish `items` on a fresh prefix in one `publish_many` or one at a time: the answers,
    each channel's stream, byte count and keys, what subscribers got (per channel), history."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(f"{url}?prefix={prefix}", history=history, max_channel_bytes=max_bytes)
    feed = Feed()
    await broker.start(feed.on_message, feed.on_reset)
    try:
        await broker.subscribe("a")
        await broker.subscribe("b")
        await broker.publish("b", {"j": 1}, 1.0)  # one channel exists already, one is new
        if many:
            envs = await broker.publish_many(items)
        else:
            envs = [await broker.publish(ch, data, ts, key) for ch, data, ts, key in items]
        distinct = 1 + len({(e.ch, e.seq) for e in envs})
        await until(lambda: len(feed.msgs) == distinct)
        r = Redis.from_url(url, decode_responses=True)
        kept: dict[str, Any] = {}
        for ch in "ab":
            keys = Keys.of(prefix, ch)
            stream: Any = await r.xrange(keys.log)
            kept[ch] = ([m["m"] for _, m in stream], await r.hget(keys.meta, "bytes"),
                        await r.zrange(keys.keys, 0, -1, withscores=True))
        await r.aclose()
        _, a_hist = await broker.history("a", None, 1000)
        got = {ch: [e.raw for e in feed.msgs if e.ch == ch] for ch in "ab"}  # (in order per channel)
        return [(e.ch, e.seq, e.raw) for e in envs], kept, got, a_hist
    finally:
        await broker.close()


@pytest.mark.parametrize("history, max_bytes", [(5, 0), (1000, 400)])
async def test_publish_many_leaves_what_one_by_one_leaves(
    redis_server: RedisProcess, history: int, max_bytes: int
) -> None:
    """A batch (one script call per channel, trimmed once) answers and keeps exactly what the
    same messages published one at a time do: seqs, envelopes, kept keys, the stream after the
    count and byte caps, what subscribers get; a key repeated in the batch answers its first
    message while the count cap would still hold it, and is numbered anew once it would not."""
    items: list[Any] = []
    for i in range(14):
        items.append(("a", {"i": i, "pad": "x" * (i * 7)}, 1.0 + i, f"k{i % 9}" if history == 5 else f"k{i}"))
        items.append(("b", {"j": -i}, 2.0 + i, None))
    items.insert(3, ("a", {"i": 0, "pad": ""}, 1.0, "k0"))  # a retry inside the batch
    many = await published(redis_server.url, items, history, max_bytes, many=True)
    assert many == await published(redis_server.url, items, history, max_bytes, many=False)
    answers: list[tuple[str, int, str]] = many[0]
    assert answers[3] == answers[0] and answers[5][1] == 3  # the retry answered the first, numbered nothing
    if history == 5:  # k0..k4 come again once their first messages are out of the history: numbered anew
        assert [seq for ch, seq, _ in answers if ch == "a"] == [1, 2, 1, *range(3, 15)]
    else:
        assert sum(len(m) for m in many[1]["a"][0]) <= 400 < sum(len(raw) for ch, _, raw in answers if ch == "a")
