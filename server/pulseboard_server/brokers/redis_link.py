"""One pub/sub connection of the Redis broker, with its own reconnect loop.

A link owns a raw redis-py connection (no hidden retries or resubscribes),
subscribes it to its channels, and hands every message to the broker in the
order Redis sent them. When the connection drops, the link says so at once
(the broker turns degraded), reconnects with backoff, resubscribes, waits
until Redis confirmed every subscription and only then asks the broker to
catch up from history; messages that arrived meanwhile follow (the broker
drops what it already delivered).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("pulseboard.redis")

OnPayload = Callable[["Link", str, str], Awaitable[None]]  # link, pub/sub channel name, payload
OnState = Callable[["Link", bool, BaseException | None], None]  # link, up, error
# link, live channel names to catch up, whether they were only just subscribed (not a gap)
CatchUp = Callable[["Link", set[str], bool], Awaitable[None]]
OnMoved = Callable[["Link", str], None]  # link, live channel Redis unsubscribed us from


# Our own generator, not the `random` module's (which an embedding program may have seeded).
_rng = random.Random()


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential backoff with jitter: about base * 2**attempt, capped."""
    d: float = min(cap, base * (2 ** min(attempt, 20)))
    return d / 2 + _rng.uniform(0, d / 2)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Link:
    """A pub/sub connection made by `make_conn`, listening to a set of channels."""

    def __init__(
        self,
        name: str,
        make_conn: Callable[[], Any],
        sharded: bool,
        on_payload: OnPayload,
        on_state: OnState,
        catch_up: CatchUp,
        control: str | None = None,
        on_moved: OnMoved | None = None,
    ) -> None:
        self.name = name
        self.make_conn = make_conn
        self.sub_cmd = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self.unsub_cmd = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self.msg_type = "smessage" if sharded else "message"
        self.on_payload = on_payload
        self.on_state = on_state
        self.catch_up = catch_up
        self.on_moved = on_moved
        self.control = control  # a channel always subscribed, so the connection is always watched
        self.channels: set[str] = set()
        self.up = False
        self.connects = 0
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"redis-link-{self.name}")
            self._task.add_done_callback(self._died)

    def _died(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # never silent: say so at once
            self.up = False
            log.error("redis listener %s stopped: %r", self.name, exc)
            self.on_state(self, False, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.disconnect()
            except Exception:
                pass

    async def add(self, live: str) -> None:
        async with self._lock:
            self.channels.add(live)
            await self._send(self.sub_cmd, live)

    async def remove(self, live: str) -> None:
        async with self._lock:
            self.channels.discard(live)
            await self._send(self.unsub_cmd, live)

    async def _send(self, cmd: str, live: str) -> None:
        """(Un)subscribe on the open connection; while down, the reconnect uses `channels`."""
        if self.up and self._conn is not None:
            try:
                await self._conn.send_command(cmd, live, check_health=False)
            except (RedisError, OSError) as e:  # the reader sees the broken connection too
                log.info("redis %s %s failed: %s", cmd, live, e)

    async def _connect(self) -> list[tuple[str, str]]:
        """Connect and subscribe; return data messages that came before every confirmation."""
        conn = self.make_conn()
        await conn.connect()
        async with self._lock:
            self._conn = conn
            wanted = set(self.channels)
            if self.control:
                wanted.add(self.control)
            if wanted:
                await conn.send_command(self.sub_cmd, *sorted(wanted), check_health=False)
            self.up = True
        early: list[tuple[str, str]] = []
        while wanted:
            reply = await conn.read_response(timeout=math.inf)
            kind = _text(reply[0]).lower()
            if kind == self.msg_type:
                early.append((_text(reply[1]), _text(reply[2])))
            elif kind == self.sub_cmd.lower():
                wanted.discard(_text(reply[1]))
        return early

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                early = await self._connect()
                self.connects += 1
                if self.channels:
                    await self.catch_up(self, set(self.channels), self.connects == 1)
                attempt = 0
                self.on_state(self, True, None)
                for name, payload in early:
                    await self.on_payload(self, name, payload)
                conn = self._conn
                while True:
                    await self._handle(await conn.read_response(timeout=math.inf))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self.up = False
                log.warning("redis pub/sub %s lost (%s: %s); reconnecting", self.name, e.__class__.__name__, e)
                self.on_state(self, False, e)
            except Exception as e:  # a bug: surface it now, then start over
                self.up = False
                log.exception("redis listener %s crashed; reconnecting", self.name)
                self.on_state(self, False, e)
            await self._drop()
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind, name = _text(reply[0]).lower(), _text(reply[1])
        if kind == self.msg_type and len(reply) >= 3:
            await self.on_payload(self, name, _text(reply[2]))
        elif kind == self.sub_cmd.lower() and name in self.channels:
            # Subscribed from now on: read what was published before, then go on in order.
            await self.catch_up(self, {name}, True)
        elif kind == self.unsub_cmd.lower() and name in self.channels and self.on_moved is not None:
            # Not asked for: the slot moved to another shard (cluster resharding or failover).
            self.on_moved(self, name)
