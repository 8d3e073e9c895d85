"""The in-memory broker: one process, history in memory, a new epoch per run.

Retention: messages whose `ts` is older than now - `retention` leave each
channel's history from the front, at every publish to the channel and in a sweep of
all channels every `sweep_period(retention)` seconds; `history` caps the count.

Reads never create channels: a channel exists from its first publish (which is
where the channel limit is counted); before that, reads see its `pending_epoch`,
the epoch its first publish will give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from typing import Any

from pulseboard.protocol import TOO_LARGE, Envelope, PulseboardError, Start

from ..replay import HistoryWindow, plan_replay
from .base import ChannelInfo, LocalClaims, OnMessage, OnReset, PublishItem, Replay, publish_each, sweep_period
from .downsample import pick


def remember_key(keys: dict[str, Envelope], key: str, env: Envelope, first: int) -> None:
    """Record `key` -> `env`; forget keys whose message left history (dicts keep insertion order)."""
    keys[key] = env
    while keys:
        oldest = next(iter(keys))
        if keys[oldest].seq >= first:
            break
        del keys[oldest]


class MemoryBroker:
    def __init__(
        self,
        url: str = "memory://",
        history: int = 1000,
        max_channels: int = 100_000,
        retention: float = 30 * 86400.0,
        sweep_every: float | None = None,
    ) -> None:
        self.url = url
        self._history = history
        self._retention = retention
        self._sweep_every = sweep_every if sweep_every is not None else sweep_period(retention)
        self._sweeper: asyncio.Task[None] | None = None
        self._max_channels = max_channels
        self._windows: dict[str, HistoryWindow] = {}
        self._keys: dict[str, dict[str, Envelope]] = {}  # per channel: idempotency key -> envelope
        self._subscribed: set[str] = set()
        self._claims = LocalClaims()
        self._on_message: OnMessage | None = None
        self._salt = uuid.uuid4().hex

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None:
        self._on_message = on_message
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def close(self) -> None:
        self._on_message = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def sweep(self) -> int:
        """Drop every channel's expired head now; how many messages went."""
        cutoff, dropped = time.time() - self._retention, 0
        for ch, w in self._windows.items():
            if n := w.expire(cutoff):
                dropped += n
                self._forget_keys(ch, w.first)
        return dropped

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every)
            self.sweep()

    def _forget_keys(self, ch: str, first: int) -> None:
        keys = self._keys.get(ch)
        while keys:
            oldest = next(iter(keys))
            if keys[oldest].seq >= first:
                break
            del keys[oldest]

    def status(self) -> str:
        return "ok"

    def _window(self, ch: str) -> HistoryWindow:
        w = self._windows.get(ch)
        if w is None:
            if len(self._windows) >= self._max_channels:
                raise PulseboardError(TOO_LARGE, f"channel limit ({self._max_channels}) reached")
            w = self._windows[ch] = HistoryWindow(pending_epoch(self._salt, ch), self._history)
        return w

    def _read_info(self, ch: str) -> tuple[ChannelInfo, HistoryWindow | None]:
        """Where `ch` is, without creating it."""
        w = self._windows.get(ch)
        if w is None:
            return ChannelInfo(ch, pending_epoch(self._salt, ch), 0, 1), None
        return self._info(ch, w), w

    def _info(self, ch: str, w: HistoryWindow) -> ChannelInfo:
        return ChannelInfo(ch, w.epoch, w.top, w.first)

    async def publish(self, ch: str, data: dict[str, Any], ts: float, key: str | None = None) -> Envelope:
        w = self._window(ch)
        keys = self._keys.setdefault(ch, {}) if key is not None else None
        if keys is not None and key in keys and keys[key].seq >= w.first:
            return keys[key]  # already numbered: same envelope, no second fan-out
        env = Envelope.make(ch, w.next_seq(), ts, data)
        w.append(env)
        if w.expire(time.time() - self._retention):  # cheap: looks at the head only
            self._forget_keys(ch, w.first)
        if keys is not None and key is not None:
            remember_key(keys, key, env, w.first)
        if ch in self._subscribed and self._on_message is not None:
            self._on_message(env)
        return env

    async def subscribe(self, ch: str) -> None:
        self._subscribed.add(ch)

    async def unsubscribe(self, ch: str) -> None:
        self._subscribed.discard(ch)

    async def replay(self, ch: str, start: Start) -> Replay:
        info, w = self._read_info(ch)
        plan = plan_replay(start, info.epoch, info.first, info.seq)
        return Replay(info, plan.recovered, w.replay(plan) if w is not None else [])

    async def history(self, ch: str, since: int | None, limit: int) -> tuple[ChannelInfo, list[Envelope]]:
        w = self._windows.get(ch)
        if w is None:
            return ChannelInfo(ch, "", 0, 1), []
        msgs = w.last(limit) if since is None else w.after(since, limit)
        return self._info(ch, w), msgs

    async def history_range(
        self, ch: str, t0: float | None, t1: float | None, points: int
    ) -> tuple[ChannelInfo, list[Envelope], bool]:
        w = self._windows.get(ch)
        if w is None:
            return ChannelInfo(ch, "", 0, 1), [], False
        msgs, downsampled = pick(w.after(0), t0, t1, points)
        return self._info(ch, w), msgs, downsampled

    async def channels(self) -> list[ChannelInfo]:
        return [self._info(ch, w) for ch, w in sorted(self._windows.items())]

    async def publish_many(self, items: list[PublishItem]) -> list[Envelope]:
        return await publish_each(self, items)

    async def claim_once(self, key: str, ttl: float) -> bool:
        return self._claims.claim(key, ttl)


def pending_epoch(salt: str, ch: str) -> str:
    """The epoch a channel gets at its first publish, known before it exists."""
    return hashlib.blake2b(f"{salt}/{ch}".encode(), digest_size=6).hexdigest()
