"""The Redis broker: many nodes, one numbering, gaps repaired from history.

A publish is one Lua script (see `redis_scripts`): it bumps the channel's
counter, keeps its epoch, appends the envelope to a stream trimmed to
`history` entries (entry id `0-<seq>`) and publishes it. A node listens only
to the channels its clients want; every message it passes on has the next
seq of that channel. A seq jump, an epoch change or a reconnect makes the
node read the missing range from the stream first; what the stream no longer
holds becomes a `reset`.

URLs: `redis://[user:pass@]host:port/db`, `rediss://...` (TLS),
`redis+cluster://host:port` or `redis://host:port?cluster=1` (Redis Cluster,
sharded pub/sub). `?prefix=NAME` changes the key prefix (default `pb`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry  # the asyncio one: the sync class draws a UserWarning in redis 8
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pulseboard.protocol import Envelope, Live, Since, Start, envelope_head, envelope_tail

from ..replay import plan_replay
from . import redis_runs
from .base import (
    BrokerUnavailable,
    ChannelInfo,
    OnMessage,
    OnReset,
    PublishItem,
    Replay,
    RunEntry,
    encode_run,
    publish_each,
    sweep_period,
)
from .redis_fanout import Delivery
from .redis_link import Link
from .redis_range import ChannelGuard, redis_range
from .redis_retention import cap_loop, sweep_loop
from .redis_scripts import PUBLISH, PUBLISH_MANY, READ, Keys

log = logging.getLogger("pulseboard.redis")

# Errors that mean "Redis is not there right now" (as opposed to a bug).
OUTAGE = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.BusyLoadingError,
    rx.ClusterDownError,
    rx.ClusterError,
    rx.MasterDownError,
    rx.ReadOnlyError,
    rx.TryAgainError,
    OSError,
)
OWN_PARAMS = {"cluster", "prefix"}


def split_url(url: str) -> tuple[str, bool, str]:
    """(URL for redis-py, cluster?, key prefix) from a broker URL."""
    parts = urlsplit(url)
    scheme = parts.scheme
    cluster = scheme.endswith("+cluster")
    if cluster:
        scheme = scheme[: -len("+cluster")]
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in OWN_PARAMS}
    rest = [(k, v) for k, v in query if k not in OWN_PARAMS]
    if own.get("cluster", "").lower() in ("1", "true", "yes"):
        cluster = True
    prefix = own.get("prefix") or "pb"
    netloc = parts.netloc.split(",")[0]  # a cluster finds its other nodes itself
    path = "" if cluster else parts.path
    return urlunsplit((scheme, netloc, path, urlencode(rest), "")), cluster, prefix


class RedisBroker:
    def __init__(
        self,
        url: str,
        history: int = 1000,
        max_channels: int = 100_000,
        connect_timeout: float = 3.0,
        health_interval: float = 1.0,
        retention: float | None = None,  # `serve --retention` (redis_retention.py); None: no sweep
        sweep_every: float | None = None,
        max_channel_bytes: int = 0,
        max_history_bytes: int = 0,
        **options: Any,
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one message")
        self.url = url
        self._history = history
        self._max_channels = max_channels
        self._connect_timeout = connect_timeout
        self._health_interval = health_interval
        self._redis_url, self.cluster, self.prefix = split_url(url)
        self._options = options
        self._client: Any = None
        self._publish: Any = None
        self._publish_many: Any = None
        self._read_script: Any = None
        self.delivery = Delivery(self.prefix, self.cluster, self._read, self._link_state)
        self._cmd_ok = False
        self._up_event = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self._metrics: Any = None
        self._guard = ChannelGuard(self.prefix, max_channels)
        self._retention = retention
        self._sweep_every = sweep_every if sweep_every is not None or retention is None else sweep_period(retention)
        self._sweep_task: asyncio.Task[None] | None = None
        self._max_channel_bytes = max_channel_bytes  # 0: no cap (in the publish script)
        self._max_history_bytes = max_history_bytes  # 0: no cap (cap_loop)
        self._published_bytes = 0  # since the total was last checked
        self._cap_wake = asyncio.Event()
        self._cap_task: asyncio.Task[None] | None = None

    def attach_metrics(self, metrics: Any) -> None:
        """Count outages and repaired gaps in the node's `Metrics`."""
        self._metrics = self.delivery.metrics = metrics

    # --- lifecycle -----------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        return {
            "decode_responses": True,
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": 10.0,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),  # a publish must never run twice
            **self._options,
        }

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None:
        """Connect, or raise at once when Redis can't be reached. Starting again is a no-op."""
        self.delivery.on_message, self.delivery.on_reset = on_message, on_reset
        if self._client is not None:
            return
        opts = self._client_options()
        if self.cluster:
            self._client = RedisCluster.from_url(self._redis_url, **opts)
        else:
            self._client = Redis.from_url(self._redis_url, **opts)
        try:
            await asyncio.wait_for(self._connect(), self._connect_timeout + 1)
        except BaseException:
            await self._aclose_client()
            raise
        self._publish = self._client.register_script(PUBLISH)
        self._publish_many = self._client.register_script(PUBLISH_MANY)
        self._read_script = self._client.register_script(READ)
        self._cmd_ok = True
        self.delivery.client = self._client
        if not self.cluster:
            link = self.delivery.make_link("main", None, control=f"{self.prefix}:node:{uuid.uuid4().hex}")
            link.start()
            try:
                await asyncio.wait_for(self._up_event.wait(), self._connect_timeout + 1)
            except BaseException:
                await self.close()
                raise
        await self._refresh_salt()
        self._health_task = asyncio.get_running_loop().create_task(self._health())
        if self._retention is not None and self._sweep_every is not None:  # not for `pulseboard agent`
            self._sweep_task = asyncio.get_running_loop().create_task(
                sweep_loop(self._client, self.prefix, self._retention, self._sweep_every))
        if self._max_history_bytes and self._retention is not None:  # serving nodes, not `pulseboard agent`
            self._cap_task = asyncio.get_running_loop().create_task(
                cap_loop(self._client, self.prefix, self._max_history_bytes, self._cap_wake))

    async def _connect(self) -> None:
        if self.cluster:
            await self._client.initialize()
        await self._client.ping()

    async def _aclose_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                pass

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        if self._sweep_task is not None:
            self._sweep_task.cancel()
            self._sweep_task = None
        if self._cap_task is not None:
            self._cap_task.cancel()
            self._cap_task = None
        await self.delivery.close()
        await self._aclose_client()

    def status(self) -> str:
        if self._client is None:
            return "degraded"
        if not self._cmd_ok or not self.delivery.links_up():
            return "degraded"
        return "ok"

    async def _health(self) -> None:
        """Ping now and then; a failed ping (or a failed command) means degraded."""
        while True:
            await asyncio.sleep(self._health_interval / (4 if self.status() != "ok" else 1))
            try:
                await self._client.ping()
                await self._refresh_salt()
            except (RedisError, OSError):
                self._set_cmd_ok(False)
            except Exception:  # never let the health check die quietly
                log.exception("redis health check failed")
                self._set_cmd_ok(False)
            else:
                self._set_cmd_ok(True)

    def _set_cmd_ok(self, ok: bool) -> None:
        if not ok:
            self._guard.forget()
        if ok != self._cmd_ok:
            self._cmd_ok = ok
            if ok:
                log.info("redis reachable again")
            else:
                log.warning("redis unreachable: publishes get 503 until it is back")
        self._gauge()

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.broker_up.set(1 if self.status() == "ok" else 0)

    def _link_state(self, link: Link, up: bool, error: BaseException | None) -> None:
        if up:
            self._up_event.set()
        else:
            self._guard.forget()
            if self._metrics is not None:
                self._metrics.broker_errors.inc()
            if self.cluster and link.channels:  # the shard may have moved: look again
                self.delivery.rehome(set(link.channels))
        self._gauge()

    # --- commands --------------------------------------------------------------------

    def _unavailable(self, e: BaseException) -> BrokerUnavailable:
        if isinstance(e, OUTAGE):
            self._set_cmd_ok(False)
        else:
            log.error("redis command failed: %r", e)
        return BrokerUnavailable(f"broker unavailable ({e.__class__.__name__}): try again shortly")

    async def publish(self, ch: str, data: dict[str, Any], ts: float, key: str | None = None) -> Envelope:
        if self._client is None:
            raise BrokerUnavailable("broker not started")
        await self._check_new_channel(ch)
        keys, args, head, tail = self._publish_call(ch, data, ts, key)
        try:
            out = await self._publish(keys=keys, args=args)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return await self._published(ch, data, ts, head, tail, out)

    def _publish_call(self, ch: str, data: dict[str, Any], ts: float,
                      key: str | None) -> tuple[list[str], list[Any], str, str]:
        """The publish script's keys and arguments, and the envelope's text around its seq."""
        keys = Keys.of(self.prefix, ch)
        head, tail = envelope_head(ch), envelope_tail(ts, data)
        args = [self._pending_epoch(ch), self._history, head, tail, keys.live, "1" if self.cluster else "0", key or "",
                self._max_channel_bytes]
        return [keys.meta, keys.log, keys.keys], args, head, tail

    async def _published(self, ch: str, data: dict[str, Any], ts: float, head: str, tail: str,
                         out: Any) -> Envelope:
        """The envelope the publish script's answer stands for."""
        if len(out) == 4:  # the key was numbered before: that message, not a new one
            return Envelope.from_raw(str(out[3]))
        _epoch, seq, created = out
        self._count_bytes(len(head) + len(tail) + 8)
        if created or int(seq) == 1:  # seq 1 without `created`: the first publish after a delete
            await self._register(ch)
        return Envelope(ch, int(seq), ts, data, head + str(seq) + tail)

    def _count_bytes(self, n: int) -> None:
        """Bytes published since the total history size was last checked (--max-history-bytes)."""
        if self._max_history_bytes:
            self._published_bytes += n
            if self._published_bytes * 8 >= self._max_history_bytes:
                self._published_bytes = 0
                self._cap_wake.set()

    def _pending_epoch(self, ch: str) -> str:
        return self._guard.pending_epoch(ch)

    async def _refresh_salt(self) -> None:
        await self._guard.refresh_salt(self._client)

    async def _check_new_channel(self, ch: str) -> None:
        try:
            await self._guard.check(self._client, ch)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None

    async def _register(self, ch: str) -> None:
        try:
            await self._client.sadd(f"{self.prefix}:channels", ch)
        except (RedisError, OSError) as e:  # only `channels` listing depends on it
            log.info("could not record channel %s: %s", ch, e)

    async def _read(
        self, ch: str, ensure: bool, mode: str = "none", a: int = 0, b: int = 0
    ) -> tuple[ChannelInfo, list[Envelope]]:
        """The channel's position and (part of) its history, read atomically."""
        if self._client is None:
            raise BrokerUnavailable("broker not started")
        keys = Keys.of(self.prefix, ch)
        args = ["", mode, a, b]  # reads never create a channel
        for retry in (True, False):
            try:
                out = await self._read_script(keys=[keys.meta, keys.log], args=args)
                break
            except (rx.ConnectionError, OSError) as e:
                # Reads are idempotent: after Redis restarts, a pooled connection fails once.
                if not retry:
                    raise self._unavailable(e) from None
            except RedisError as e:
                raise self._unavailable(e) from None
        epoch, top, first = str(out[0]), int(out[1]), int(out[2])
        if not epoch and ensure:  # not published yet: the epoch its first publish will give it
            try:
                await self._refresh_salt()
            except (RedisError, OSError) as e:
                raise self._unavailable(e) from None
            epoch = self._pending_epoch(ch)
        return ChannelInfo(ch, epoch, top, first), [Envelope.from_raw(r) for r in out[4:]]

    async def replay(self, ch: str, start: Start) -> Replay:
        if isinstance(start, Since):
            info, msgs = await self._read(ch, True, "after", start.seq)
        elif isinstance(start, Live) or start.n == 0:
            info, msgs = await self._read(ch, True)
        else:
            info, msgs = await self._read(ch, True, "last", start.n)
        plan = plan_replay(start, info.epoch, info.first, info.seq)
        if plan.after is None and not plan.last:
            msgs = []
        return Replay(info, plan.recovered, msgs)

    async def history(self, ch: str, since: int | None, limit: int) -> tuple[ChannelInfo, list[Envelope]]:
        if since is None:
            return await self._read(ch, False, "last", limit)
        return await self._read(ch, False, "after", since, limit)

    async def history_range(
        self, ch: str, t0: float | None, t1: float | None, points: int
    ) -> tuple[ChannelInfo, list[Envelope], bool]:
        return await redis_range(self._read, ch, t0, t1, points)

    async def channels(self) -> list[ChannelInfo]:
        try:
            names = sorted(await self._client.smembers(f"{self.prefix}:channels"))
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        out: list[ChannelInfo] = []
        for i in range(0, len(names), 100):
            infos = await asyncio.gather(*(self._read(ch, False) for ch in names[i : i + 100]))
            out.extend(info for info, _ in infos if info.epoch)
        return out

    async def publish_many(self, items: list[PublishItem]) -> list[Envelope]:
        """One pipelined round trip for the batch (not one per message); Redis runs the
        scripts in order, so each channel is numbered in the batch's order."""
        if self.cluster or len(items) < 2:  # (a cluster batch spans slots: one script call each)
            return await publish_each(self, items)
        if self._client is None:
            raise BrokerUnavailable("broker not started")
        for ch in dict.fromkeys(item[0] for item in items):
            await self._check_new_channel(ch)
        runs: dict[str, list[int]] = {}  # each channel's items (their places in the batch), in order
        for i, item in enumerate(items):
            runs.setdefault(item[0], []).append(i)
        tails = [envelope_tail(ts, data) for _ch, data, ts, _key in items]
        pipe = self._client.pipeline(transaction=False)
        heads = {}
        for ch, places in runs.items():
            keys = Keys.of(self.prefix, ch)
            heads[ch] = head = envelope_head(ch)
            args: list[Any] = [self._pending_epoch(ch), self._history, head, keys.live, "1" if self.cluster else "0",
                               self._max_channel_bytes]
            for i in places:
                args += (tails[i], items[i][3] or "")
            await self._publish_many(keys=[keys.meta, keys.log, keys.keys], args=args, client=pipe)  # queued
        try:
            outs = await pipe.execute()
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        envs: list[Envelope | None] = [None] * len(items)
        for (ch, places), out in zip(runs.items(), outs, strict=True):
            head, created, numbered = heads[ch], int(out[1]), False
            for i, r in zip(places, out[2:], strict=True):
                if isinstance(r, int):
                    _ch, data, ts, _key = items[i]
                    envs[i] = Envelope(ch, r, ts, data, head + str(r) + tails[i])
                    self._count_bytes(len(head) + len(tails[i]) + 8)
                    numbered = numbered or r == 1
                else:  # the key was numbered before: that message
                    envs[i] = Envelope.from_raw(str(r))
            if created or numbered:  # seq 1 without `created`: the first publish after a delete
                await self._register(ch)
        return [e for e in envs if e is not None]

    async def claim_once(self, key: str, ttl: float) -> bool:
        try:
            ok = await self._client.set(
                f"{self.prefix}:claim:{key}", "1", nx=True, px=max(1, int(ttl * 1000))
            )
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return bool(ok)

    # --- deleting and run records: see redis_runs ----------------------------------------

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._client is None:
            raise BrokerUnavailable("broker not started")
        try:
            return await fn(self._client, self.prefix, *args)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None

    async def delete(self, ch: str) -> bool:
        done: bool = await self._call(redis_runs.delete_channel, self.cluster, ch)
        return done

    async def run_put(self, project: str, name: str, record: dict[str, Any]) -> None:
        await self._call(redis_runs.put_run, project, name, record)

    async def run_get(self, project: str, name: str) -> dict[str, Any] | None:
        rec: dict[str, Any] | None = await self._call(redis_runs.get_run, project, name)
        return rec

    async def run_list(self, project: str) -> list[dict[str, Any]]:
        recs: list[dict[str, Any]] = await self._call(redis_runs.list_runs, project)
        return recs

    async def run_entries(self, project: str) -> list[RunEntry]:
        return [(rec, encode_run(rec)) for rec in await self.run_list(project)]

    async def run_delete(self, project: str, name: str) -> bool:
        gone: bool = await self._call(redis_runs.delete_run, project, name)
        return gone

    # --- fan-out: see redis_fanout ------------------------------------------------------

    async def subscribe(self, ch: str) -> None:
        await self.delivery.subscribe(ch)

    async def unsubscribe(self, ch: str) -> None:
        await self.delivery.unsubscribe(ch)

    @property
    def gaps_repaired(self) -> int:
        return self.delivery.gaps_repaired

    @property
    def resets(self) -> int:
        return self.delivery.resets


__all__ = ["RedisBroker", "split_url"]
