"""Delivery for the Redis broker: which channels this node listens to, on which
connection, and the rule that each one is passed on in seq order, once, with gaps
read back from the channel's stream (or reported as a reset) first.

Every delivery of a channel happens in the task of the link (pub/sub connection)
that carries it, so deliveries of one channel never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.retry import Retry  # the asyncio one: the sync class draws a UserWarning in redis 8
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pulseboard.protocol import Envelope

from .base import ChannelInfo, OnMessage, OnReset
from .redis_link import Link, OnState
from .redis_scripts import Keys, channel_of_live

log = logging.getLogger("pulseboard.redis")

# (channel, create it when absent, mode, a, b) -> its position and part of its history
Read = Callable[[str, bool, str, int, int], Awaitable[tuple[ChannelInfo, list[Envelope]]]]


@dataclass(slots=True)
class _Chan:
    """What this node delivered of one subscribed channel."""

    epoch: str
    last: int
    link: Link



class Delivery:
    def __init__(self, prefix: str, cluster: bool, read: Read, on_state: OnState) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self._read = read
        self.on_state = on_state
        self.client: Any = None
        self.metrics: Any = None
        self.on_message: OnMessage | None = None
        self.on_reset: OnReset | None = None
        self.chans: dict[str, _Chan] = {}
        self.links: dict[str, Link] = {}
        self._rehome_pending: set[str] = set()
        self._rehome_task: asyncio.Task[None] | None = None
        self.gaps_repaired = 0
        self.resets = 0

    def links_up(self) -> bool:
        return all(link.up for link in self.links.values() if link.channels or link.control)

    async def close(self) -> None:
        if self._rehome_task is not None:
            self._rehome_task.cancel()
            self._rehome_task = None
        links, self.links = list(self.links.values()), {}
        for link in links:
            await link.close()
        self.chans.clear()
        self.on_message = self.on_reset = None

    def make_link(self, name: str, node: Any, control: str | None = None) -> Link:
        if node is None:
            pool = self.client.connection_pool
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
            on_payload=self.on_payload,
            on_state=self.on_state,
            catch_up=self.catch_up,
            control=control,
            on_moved=lambda _link, name: self.rehome({name}),
        )
        self.links[name] = link
        return link

    def link_for(self, keys: Keys) -> Link:
        if not self.cluster:
            return self.links["main"]
        node = self.client.get_node_from_key(keys.meta)
        link = self.links.get(node.name)
        if link is None:
            link = self.make_link(node.name, node)
            link.start()
        return link

    async def subscribe(self, ch: str) -> None:
        if ch in self.chans:
            return
        keys = Keys.of(self.prefix, ch)
        info, _ = await self._read(ch, True, "none", 0, 0)
        if ch in self.chans:
            return
        link = self.link_for(keys)
        self.chans[ch] = _Chan(info.epoch, info.seq, link)
        await link.add(keys.live)

    async def unsubscribe(self, ch: str) -> None:
        st = self.chans.pop(ch, None)
        if st is not None:
            await st.link.remove(Keys.of(self.prefix, ch).live)

    def _emit(self, env: Envelope) -> None:
        if self.on_message is not None:
            self.on_message(env)

    def _reset(self, ch: str, epoch: str, seq: int) -> None:
        self.resets += 1
        log.info("channel %s continues from %s/%d: the gap before can't be repaired", ch, epoch, seq)
        if self.on_reset is not None:
            self.on_reset(ch, epoch, seq)

    async def on_payload(self, link: Link, name: str, payload: str) -> None:
        ch = channel_of_live(self.prefix, name)
        st = self.chans.get(ch) if ch is not None else None
        if ch is None or st is None or st.link is not link:
            return
        epoch, _, raw = payload.partition(" ")
        if not raw:  # a delete (redis_runs): the channel starts a new epoch at 0
            await self._resync(ch, st)
            return
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

    async def catch_up(self, link: Link, names: set[str], fresh: bool) -> None:
        """Runs in `link`'s task, so a channel's deliveries never interleave.

        `fresh`: the channels were only just subscribed; what is read then closes the
        window between reading the top and the subscription, not a gap.
        """
        for name in sorted(names):
            ch = channel_of_live(self.prefix, name)
            st = self.chans.get(ch) if ch is not None else None
            if ch is not None and st is not None and st.link is link:
                await self._resync(ch, st, count=not fresh)

    def rehome(self, names: set[str]) -> None:
        """Cluster: move these channels' subscriptions to the shards that own them now."""
        self._rehome_pending |= names
        if self._rehome_task is None or self._rehome_task.done():
            self._rehome_task = asyncio.get_running_loop().create_task(self._rehoming())

    async def _rehoming(self) -> None:
        while self._rehome_pending:
            await asyncio.sleep(0.05)  # gather the notices of one move
            names, self._rehome_pending = self._rehome_pending, set()
            try:
                await self.client.nodes_manager.initialize()
            except (RedisError, OSError) as e:
                log.warning("redis cluster topology refresh failed (%s); retrying", e)
                self._rehome_pending |= names
                await asyncio.sleep(0.5)
                continue
            for name in sorted(names):
                ch = channel_of_live(self.prefix, name)
                st = self.chans.get(ch) if ch is not None else None
                if ch is None or st is None:
                    continue
                old, new = st.link, self.link_for(Keys.of(self.prefix, ch))
                if new is not old:
                    log.info("channel %s moved from shard %s to %s", ch, old.name, new.name)
                    await old.remove(name)
                    st.link = new
                await new.add(name)  # subscribes (again); the confirmation triggers the catch-up
            for key, link in list(self.links.items()):
                if not link.channels and not link.up:  # a shard we no longer need, gone
                    del self.links[key]
                    await link.close()

    async def _resync(self, ch: str, st: _Chan, count: bool = True) -> None:
        """Deliver what Redis holds after `st.last`; reset where that is impossible."""
        info, msgs = await self._read(ch, True, "after", st.last, 0)
        if self.chans.get(ch) is not st:
            return
        reset = False
        if info.epoch != st.epoch:
            info, msgs = await self._read(ch, True, "after", 0, 0)
            if self.chans.get(ch) is not st:
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
            if self.metrics is not None:
                self.metrics.gaps_repaired.inc()
        for env in msgs:
            if env.seq == st.last + 1:
                self._emit(env)
                st.last = env.seq


__all__ = ["Delivery"]
