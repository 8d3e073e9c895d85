"""The send path: batch what the broker delivers per tick and hand it to subscribers.

Within one tick every channel's envelopes are gathered; each subscriber gets
one frame holding its channels' share. Frames with the same content are built
once and shared (see `FrameCache`), so a frame going to many clients is
serialised once.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterator, Sequence
from typing import Protocol

from pulseboard.protocol import Envelope, batch_frame

from .brokers.base import Broker
from .metrics import Metrics
from .replay import ChannelSync

log = logging.getLogger("pulseboard.fanout")

Part = tuple[str, Sequence[Envelope]]  # one channel's envelopes in this tick, seq order
REPLAY_CHUNK = 500  # envelopes per replayed frame or event

# permessage-deflate, as the WebSocket transport negotiates it (no context takeover, so a
# compressed frame depends on nothing sent before it and can go to every client as is).
# Below DEFLATE_MIN bytes a frame is sent plain: a one-envelope live frame (~100 bytes)
# shrinks by about 10 % and costs the client an inflate; a backfill frame of 500
# envelopes shrinks about 5x (figures in docs/performance.md).
DEFLATE_MIN = 1024
DEFLATE_WINDOW_BITS = 12  # memLevel 5 and a 4 KiB window: a compressor costs ~15x less to make than zlib's default
_SYNC_TAIL = b"\x00\x00\xff\xff"


# A frame made for one client (a replay or backfill slice, a queued frame) is compressed at
# level 1: 2.2x less CPU than level 6 for 6.4x instead of 7.0x smaller on a 500-envelope
# replay frame (docs/performance.md); a frame shared by every client keeps level 6.
PER_CLIENT_LEVEL = 1


def deflate(data: bytes, level: int = 6) -> bytes:
    """One message compressed for permessage-deflate without context takeover (RFC 7692 7.2.1)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -DEFLATE_WINDOW_BITS, 5)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(_SYNC_TAIL) else out


def replay_chunks(msgs: Sequence[Envelope], max_bytes: int, first: int = 0) -> Iterator[Sequence[Envelope]]:
    """Split a replay, from index `first` on, into frames of at most REPLAY_CHUNK envelopes and
    about `max_bytes` (no copy of what comes before: a long replay is read once, not once a chunk)."""
    start, size = first, 0
    for i in range(first, len(msgs)):
        env = msgs[i]
        if i > start and (i - start >= REPLAY_CHUNK or size + len(env.raw) > max_bytes):
            yield msgs[start:i]
            start, size = i, 0
        size += len(env.raw) + 1
    if start < len(msgs):
        yield msgs[start:]


class FrameCache:
    """Frames built this tick, keyed by what they hold."""

    __slots__ = ("_deflated", "_frames")

    def __init__(self) -> None:
        self._frames: dict[tuple[object, ...], bytes] = {}
        self._deflated: dict[bytes, bytes] = {}

    def deflated(self, data: bytes) -> bytes:
        """`data` compressed (see `deflate`), once per content for every client of this tick."""
        out = self._deflated.get(data)
        if out is None:
            out = self._deflated[data] = deflate(data)
        return out

    def frame(self, parts: Sequence[tuple[str, int, Sequence[Envelope]]]) -> bytes:
        """A JSON array of `envs[skip:]` for each (ch, skip, envs), encoded once per content."""
        key: tuple[object, ...]
        if len(parts) == 1:  # the common case, without building a tuple of tuples
            key = (parts[0][0], parts[0][1])
        else:
            key = tuple((ch, skip) for ch, skip, _ in parts)
        data = self._frames.get(key)
        if data is None:
            data = self._frames[key] = batch_frame(
                e.raw for _, skip, envs in parts for e in envs[skip:]
            ).encode()
        return data


class Subscriber(Protocol):
    """A connected client of any transport."""

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None: ...

    def reset(self, ch: str, epoch: str, seq: int) -> None: ...


def live_parts(
    syncs: dict[str, ChannelSync], parts: Sequence[Part], advance: bool = True
) -> list[tuple[str, int, Sequence[Envelope]]]:
    """The part of a tick a subscriber should get now; holds envelopes of syncing channels.

    Each envelope is passed once and in order: those at or below the client's
    position are skipped (they were already replayed). With `advance`, the position moves
    to each channel's last envelope; without, the caller moves it as it takes them.
    """
    out: list[tuple[str, int, Sequence[Envelope]]] = []
    for ch, envs in parts:
        sync = syncs.get(ch)
        if sync is None:
            continue
        if sync.syncing:
            for e in envs:
                sync.hold(e)
            continue
        skip = 0
        while skip < len(envs) and envs[skip].seq <= sync.seq:
            skip += 1
        if skip < len(envs):
            if advance:
                sync.seq = envs[-1].seq
            out.append((ch, skip, envs))
    return out


class Fanout:
    """Node-level fan-out: which local subscribers want which channel."""

    def __init__(self, broker: Broker, metrics: Metrics, tick: float) -> None:
        self.broker = broker
        self.metrics = metrics
        self.tick = tick
        self._subs: dict[str, set[Subscriber]] = {}
        self._pending: dict[str, list[Envelope]] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._interest_lock = asyncio.Lock()

    # --- called by the broker --------------------------------------------------

    def on_message(self, env: Envelope) -> None:
        if env.ch not in self._subs:
            return
        self._pending.setdefault(env.ch, []).append(env)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            if self.tick > 0:
                self._flush_handle = loop.call_later(self.tick, self.flush)
            else:
                self._flush_handle = loop.call_soon(self.flush)

    def on_reset(self, ch: str, epoch: str, seq: int) -> None:
        self.metrics.resets.inc()
        for sub in list(self._subs.get(ch, ())):
            sub.reset(ch, epoch, seq)

    def flush(self) -> None:
        """Deliver this tick's envelopes: one frame per subscriber."""
        self._flush_handle = None
        pending, self._pending = self._pending, {}
        targets: dict[Subscriber, list[Part]] = {}
        for ch, envs in pending.items():
            for sub in self._subs.get(ch, ()):
                targets.setdefault(sub, []).append((ch, envs))
        cache = FrameCache()
        for sub, parts in targets.items():
            try:
                sub.deliver(parts, cache)
            except Exception:  # one bad subscriber must not stop the others
                log.exception("delivery to a subscriber failed")

    # --- called by transports --------------------------------------------------

    async def add(self, sub: Subscriber, ch: str) -> None:
        """Register interest; the broker is subscribed on the node's first."""
        subs = self._subs.get(ch)
        if subs is None:
            subs = self._subs[ch] = set()
            subs.add(sub)
            try:
                async with self._interest_lock:
                    await self.broker.subscribe(ch)
            except BaseException:
                self.discard(sub, ch)
                raise
        else:
            subs.add(sub)

    def discard(self, sub: Subscriber, ch: str) -> None:
        subs = self._subs.get(ch)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[ch]
            self._pending.pop(ch, None)
            asyncio.get_running_loop().create_task(self._unsubscribe(ch))

    async def _unsubscribe(self, ch: str) -> None:
        async with self._interest_lock:
            if ch in self._subs:
                return
            try:
                await self.broker.unsubscribe(ch)
            except Exception as e:
                log.warning("broker unsubscribe from %s failed: %s", ch, e)
