"""The Redis broker's long-range reads (downsampled history) and reads that never create channels.

- `redis_range`: `history_range` by scanning the channel's stream (at most
  --history entries) and downsampling it like every other broker.
- `ChannelGuard`: the channel limit, counted where channels are created (the
  first publish; reads create nothing), and the epoch a not-yet-published
  channel will get: a hash of the deployment's salt (`<prefix>:salt`, made
  once) and the channel name, so every node answers the same before it exists.
  The salt is read again before a channel is created or read while it does not
  exist (and with every health check): if Redis lost its data, a new salt means
  new epochs, never an old epoch with a restarted numbering.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pulseboard.protocol import TOO_LARGE, Envelope, PulseboardError

from .base import ChannelInfo
from .downsample import pick

Read = Callable[[str, bool, str, int, int], Awaitable[tuple[ChannelInfo, list[Envelope]]]]
CHUNK = 5000


async def redis_range(
    read: Read, ch: str, t0: float | None, t1: float | None, points: int
) -> tuple[ChannelInfo, list[Envelope], bool]:
    info, envs = await read(ch, False, "after", 0, CHUNK)
    if not info.epoch:
        return info, [], False
    chunk = envs
    while len(chunk) == CHUNK:  # the stream holds at most --history entries
        more_info, chunk = await read(ch, False, "after", envs[-1].seq, CHUNK)
        if more_info.epoch != info.epoch:
            break
        envs.extend(chunk)
        info = more_info
    msgs, down = pick(envs, t0, t1, points)
    return info, msgs, down


class ChannelGuard:
    def __init__(self, prefix: str, max_channels: int) -> None:
        self.prefix = prefix
        self.max_channels = max_channels
        self.salt = ""
        self._known: set[str] = set()  # channels this node saw exist (bounded by the limit)
        self._checking: dict[str, asyncio.Task[None]] = {}

    def pending_epoch(self, ch: str) -> str:
        return hashlib.blake2b(f"{self.salt}/{ch}".encode(), digest_size=6).hexdigest()

    async def refresh_salt(self, client: Any) -> None:
        key = f"{self.prefix}:salt"
        await client.set(key, uuid.uuid4().hex, nx=True)
        salt = await client.get(key)
        if salt and salt != self.salt:
            self.salt = str(salt)
            self._known.clear()

    def forget(self) -> None:
        """Redis went away: it may come back empty, so check channels and salt again."""
        self._known.clear()

    async def check(self, client: Any, ch: str) -> None:
        """Raise `too_large` when publishing `ch` would create one channel too many.

        A channel this node has not seen exist is checked in Redis, with the salt
        read again first, so a channel made anew gets the current salt's epoch.
        Concurrent first publishes of one channel share one check."""
        if ch in self._known:
            return
        task = self._checking.get(ch)
        if task is None:
            task = self._checking[ch] = asyncio.ensure_future(self._check(client, ch))
            task.add_done_callback(lambda _t: self._checking.pop(ch, None))
        await asyncio.shield(task)

    async def _check(self, client: Any, ch: str) -> None:
        await self.refresh_salt(client)
        key = f"{self.prefix}:channels"
        if not await client.sismember(key, ch):
            if await client.scard(key) >= self.max_channels:
                raise PulseboardError(TOO_LARGE, f"channel limit ({self.max_channels}) reached")
        if len(self._known) < self.max_channels:
            self._known.add(ch)


__all__ = ["ChannelGuard", "redis_range"]
