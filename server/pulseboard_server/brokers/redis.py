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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from pulseboard.protocol import Envelope, Live, Since, Start, dumps, plan_replay

from .base import BrokerUnavailable, ChannelInfo, OnMessage, OnReset, Replay
from .redis_link import Link
from .redis_scripts import PUBLISH, READ, Keys, channel_of_live

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


@dataclass(slots=True)
class _Chan:
    """What this node delivered of one subscribed channel."""

    epoch: str
    last: int
    link: Link


def _new_epoch() -> str:
    return uuid.uuid4().hex[:12]


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
        self._read_script: Any = None
        self._chans: dict[str, _Chan] = {}
        self._links: dict[str, Link] = {}
        self._on_message: OnMessage | None = None
        self._on_reset: OnReset | None = None
        self._cmd_ok = False
        self._up_event = asyncio.Event()
        self._health_task: asyncio.Task[None] | None = None
        self._metrics: Any = None
        self._rehome_pending: set[str] = set()
        self._rehome_task: asyncio.Task[None] | None = None
        self.gaps_repaired = 0
        self.resets = 0

    def attach_metrics(self, metrics: Any) -> None:
        """Count outages and repaired gaps in the node's `Metrics`."""
        self._metrics = metrics

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
        self._on_message, self._on_reset = on_message, on_reset
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
        self._read_script = self._client.register_script(READ)
        self._cmd_ok = True
        if not self.cluster:
            link = self._make_link("main", None, control=f"{self.prefix}:node:{uuid.uuid4().hex}")
            link.start()
            try:
                await asyncio.wait_for(self._up_event.wait(), self._connect_timeout + 1)
            except BaseException:
                await self.close()
                raise
        self._health_task = asyncio.get_running_loop().create_task(self._health())

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
        for task in (self._health_task, self._rehome_task):
            if task is not None:
                task.cancel()
        self._health_task = self._rehome_task = None
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
        self._chans.clear()
        await self._aclose_client()
        self._on_message = None

    def status(self) -> str:
        if self._client is None:
            return "degraded"
        if not self._cmd_ok or any(not link.up for link in self._links.values() if link.channels or link.control):
            return "degraded"
        return "ok"

    async def _health(self) -> None:
        """Ping now and then; a failed ping (or a failed command) means degraded."""
        while True:
            await asyncio.sleep(self._health_interval / (4 if self.status() != "ok" else 1))
            try:
                await self._client.ping()
            except (RedisError, OSError):
                self._set_cmd_ok(False)
            except Exception:  # never let the health check die quietly
                log.exception("redis health check failed")
                self._set_cmd_ok(False)
            else:
                self._set_cmd_ok(True)

    def _set_cmd_ok(self, ok: bool) -> None:
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
            if self._metrics is not None:
                self._metrics.broker_errors.inc()
            if self.cluster and link.channels:  # the shard may have moved: look again
                self._rehome(set(link.channels))
        self._gauge()

    # --- commands --------------------------------------------------------------------

    def _unavailable(self, e: BaseException) -> BrokerUnavailable:
        if isinstance(e, OUTAGE):
            self._set_cmd_ok(False)
        else:
            log.error("redis command failed: %r", e)
        return BrokerUnavailable(f"broker unavailable ({e.__class__.__name__}): try again shortly")

    async def publish(self, ch: str, data: dict[str, Any], ts: float) -> Envelope:
        if self._client is None:
            raise BrokerUnavailable("broker not started")
        keys = Keys.of(self.prefix, ch)
        head = '{"ch":' + dumps(ch) + ',"seq":'
        tail = ',"ts":' + dumps(ts) + ',"data":' + dumps(data) + "}"
        args = [_new_epoch(), self._history, head, tail, keys.live, "1" if self.cluster else "0"]
        try:
            _epoch, seq, created = await self._publish(keys=[keys.meta, keys.log], args=args)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        if created:
            await self._register(ch)
        return Envelope(ch, int(seq), ts, data, head + str(seq) + tail)

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
        args = [_new_epoch() if ensure else "", mode, a, b]
        try:
            out = await self._read_script(keys=[keys.meta, keys.log], args=args)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        epoch, top, first, created = str(out[0]), int(out[1]), int(out[2]), int(out[3])
        if created:
            await self._register(ch)
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

    async def claim_once(self, key: str, ttl: float) -> bool:
        try:
            ok = await self._client.set(
                f"{self.prefix}:claim:{key}", "1", nx=True, px=max(1, int(ttl * 1000))
            )
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return bool(ok)

    # --- fan-out -------------------------------------------------------------------------

    def _make_link(self, name: str, node: Any, control: str | None = None) -> Link:
        if node is None:
            pool = self._client.connection_pool
            cls, kwargs = pool.connection_class, pool.connection_kwargs
        else:
            cls, kwargs = node.connection_class, node.connection_kwargs
        conn_kwargs = {
            **kwargs,
            "retry": Retry(NoBackoff(), 0),  # the link reconnects itself, visibly
            "socket_timeout": None,
            "protocol": 2,  # pub/sub messages as plain replies, not RESP3 pushes
            "maint_notifications_config": None,
            "maint_notifications_pool_handler": None,
        }

        link = Link(
            name,
            lambda: cls(**conn_kwargs),
            sharded=self.cluster,
            on_payload=self._on_payload,
            on_state=self._link_state,
            catch_up=self._catch_up,
            control=control,
            on_moved=lambda _link, name: self._rehome({name}),
        )
        self._links[name] = link
        return link

    def _link_for(self, keys: Keys) -> Link:
        if not self.cluster:
            return self._links["main"]
        node = self._client.get_node_from_key(keys.meta)
        link = self._links.get(node.name)
        if link is None:
            link = self._make_link(node.name, node)
            link.start()
        return link

    async def subscribe(self, ch: str) -> None:
        if ch in self._chans:
            return
        keys = Keys.of(self.prefix, ch)
        info, _ = await self._read(ch, True)
        if ch in self._chans:
            return
        link = self._link_for(keys)
        self._chans[ch] = _Chan(info.epoch, info.seq, link)
        await link.add(keys.live)

    async def unsubscribe(self, ch: str) -> None:
        st = self._chans.pop(ch, None)
        if st is not None:
            await st.link.remove(Keys.of(self.prefix, ch).live)

    def _emit(self, env: Envelope) -> None:
        if self._on_message is not None:
            self._on_message(env)

    def _reset(self, ch: str, epoch: str, seq: int) -> None:
        self.resets += 1
        log.info("channel %s continues from %s/%d: the gap before can't be repaired", ch, epoch, seq)
        if self._on_reset is not None:
            self._on_reset(ch, epoch, seq)

    async def _on_payload(self, link: Link, name: str, payload: str) -> None:
        ch = channel_of_live(self.prefix, name)
        st = self._chans.get(ch) if ch is not None else None
        if ch is None or st is None or st.link is not link:
            return
        epoch, _, raw = payload.partition(" ")
        try:
            env = Envelope.from_raw(raw)
        except (ValueError, KeyError, TypeError):  # not ours: someone else published on our channel
            log.warning("ignoring a malformed message on %s: %.80r", name, payload)
            return
        if epoch == st.epoch:
            if env.seq <= st.last:
                return
            if env.seq == st.last + 1:
                self._emit(env)  # if this raises, the message is delivered again after the restart
                st.last = env.seq
                return
        await self._resync(ch, st)

    async def _catch_up(self, link: Link, names: set[str], fresh: bool) -> None:
        """Runs in `link`'s task, so a channel's deliveries never interleave.

        `fresh`: the channels were only just subscribed; what is read then closes the
        window between reading the top and the subscription, not a gap.
        """
        for name in sorted(names):
            ch = channel_of_live(self.prefix, name)
            st = self._chans.get(ch) if ch is not None else None
            if ch is not None and st is not None and st.link is link:
                await self._resync(ch, st, count=not fresh)

    def _rehome(self, names: set[str]) -> None:
        """Cluster: move these channels' subscriptions to the shards that own them now."""
        self._rehome_pending |= names
        if self._rehome_task is None or self._rehome_task.done():
            self._rehome_task = asyncio.get_running_loop().create_task(self._rehoming())

    async def _rehoming(self) -> None:
        while self._rehome_pending:
            await asyncio.sleep(0.05)  # gather the notices of one move
            names, self._rehome_pending = self._rehome_pending, set()
            try:
                await self._client.nodes_manager.initialize()
            except (RedisError, OSError) as e:
                log.warning("redis cluster topology refresh failed (%s); retrying", e)
                self._rehome_pending |= names
                await asyncio.sleep(0.5)
                continue
            for name in sorted(names):
                ch = channel_of_live(self.prefix, name)
                st = self._chans.get(ch) if ch is not None else None
                if ch is None or st is None:
                    continue
                old, new = st.link, self._link_for(Keys.of(self.prefix, ch))
                if new is not old:
                    log.info("channel %s moved from shard %s to %s", ch, old.name, new.name)
                    await old.remove(name)
                    st.link = new
                await new.add(name)  # subscribes (again); the confirmation triggers the catch-up
            for key, link in list(self._links.items()):
                if not link.channels and not link.up:  # a shard we no longer need, gone
                    del self._links[key]
                    await link.close()

    async def _resync(self, ch: str, st: _Chan, count: bool = True) -> None:
        """Deliver what Redis holds after `st.last`; reset where that is impossible."""
        info, msgs = await self._read(ch, True, "after", st.last)
        if self._chans.get(ch) is not st:
            return
        reset = False
        if info.epoch != st.epoch:
            info, msgs = await self._read(ch, True, "after", 0)
            if self._chans.get(ch) is not st:
                return
            st.epoch, st.last, reset = info.epoch, (msgs[0].seq - 1 if msgs else info.seq), True
        elif info.seq < st.last:  # the same epoch went back: writes were lost
            st.last, reset = info.seq, True
        elif msgs and msgs[0].seq > st.last + 1:  # trimmed past what we had
            st.last, reset = msgs[0].seq - 1, True
        elif not msgs and info.seq > st.last:
            st.last, reset = info.seq, True
        if reset:
            self._reset(ch, st.epoch, st.last)
        elif msgs and count:
            self.gaps_repaired += 1
            if self._metrics is not None:
                self._metrics.gaps_repaired.inc()
        for env in msgs:
            if env.seq == st.last + 1:
                self._emit(env)
                st.last = env.seq


__all__ = ["RedisBroker", "split_url"]
