"""A small async subscriber with exact resume: `async for env in subscribe(...)`.

It keeps `(epoch, seq)` per channel, drops duplicates, reconnects with
full-jitter exponential backoff and resubscribes with `since`, just like the
browser client. Gaps it cannot fill (`recovered: false`, `reset`) are reported
through `on_gap` and the `gaps` list, never hidden.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .closes import CLOSES
from .protocol import SUBPROTOCOL, Envelope, iter_envelopes
from .publish import server_token, server_url

log = logging.getLogger("pulseboard.client")

TokenSource = str | Callable[[], str]
FATAL_CLOSE = {c.code for c in CLOSES.values() if not c.retry}  # no reconnect after these


@dataclass(frozen=True, slots=True)
class Gap:
    """Continuity was lost on `ch`: messages before `seq` of `epoch` may be missing."""

    ch: str
    epoch: str
    seq: int
    reason: str


def stops_after(close_code: int | None) -> bool:
    """True when a close with this code means reconnecting cannot help (closes.json `retry: false`).

    The browser's fallback policy makes the same call (tests/vectors/fallback.json)."""
    return close_code in FATAL_CLOSE


# Our own generator, not the `random` module's: a caller that seeds `random` gets its own numbers.
_rng = random.Random()


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return _rng.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


class SubscribeError(Exception):
    """The server refused us for good (bad token, forbidden channel)."""


class Client:
    """Subscribes to channels and yields their envelopes, in order, once each."""

    def __init__(
        self,
        channels: Iterable[str] | Mapping[str, Any],
        *,
        url: str | None = None,
        token: TokenSource | None = None,
        backfill: int = 0,
        on_gap: Callable[[Gap], None] | None = None,
        max_queue: int = 10_000,
    ) -> None:
        self.url = server_url(url)
        self._token: TokenSource = token if token is not None else server_token()
        self.initial: dict[str, Any] = (
            dict(channels) if isinstance(channels, Mapping)
            else {ch: ({"backfill": backfill} if backfill else None) for ch in channels}
        )
        self.positions: dict[str, tuple[str, int]] = {}
        self.gaps: deque[Gap] = deque(maxlen=1000)
        self.events: deque[dict[str, Any]] = deque(maxlen=1000)  # control ops seen
        self.on_gap = on_gap
        self.connects = 0
        self.node: str | None = None
        self._queue: asyncio.Queue[Envelope | BaseException] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._connected = asyncio.Event()

    def token(self) -> str:
        return self._token() if callable(self._token) else self._token

    @property
    def ws_url(self) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return base + "/ws"

    def subscribe_op(self) -> dict[str, Any]:
        """The `subscribe` op to send on (re)connect: `since` where we have a position."""
        chs: dict[str, Any] = {}
        for ch, start in self.initial.items():
            pos = self.positions.get(ch)
            chs[ch] = {"since": pos[1], "epoch": pos[0]} if pos else start
        return {"op": "subscribe", "ch": chs}

    def handle_control(self, op: dict[str, Any]) -> None:
        """Apply a server control op to the positions (pure bookkeeping)."""
        self.events.append(op)
        kind = op.get("op")
        if kind == "welcome":
            self.node = op.get("node")
        elif kind == "subscribed":
            ch, epoch, top = op["ch"], op["epoch"], int(op["seq"])
            pos = self.positions.get(ch)
            asked = self.initial.get(ch)
            if pos is None and isinstance(asked, dict) and "since" in asked:
                # The caller gave its own starting position: resume from it.
                pos = (str(asked.get("epoch")), int(asked["since"]))
                if pos[0] == epoch:
                    self.positions[ch] = pos
            if pos is None:
                start_seq = 0 if isinstance(asked, dict) and asked.get("backfill") else top
                self.positions[ch] = (epoch, start_seq)
            elif pos[0] != epoch:
                self.positions[ch] = (epoch, top)
                self._gap(Gap(ch, epoch, top, "epoch changed"))
            elif not op.get("recovered", True):
                if pos[1] > top:  # the server's numbering went back: follow it from its top
                    self.positions[ch] = (epoch, top)
                self._gap(Gap(ch, epoch, min(pos[1], top), "history no longer holds what was missed"))
        elif kind == "reset":
            ch, epoch, top = op["ch"], op["epoch"], int(op["seq"])
            self.positions[ch] = (epoch, top)
            self._gap(Gap(ch, epoch, top, "numbering restarted"))
        elif kind == "error":
            log.warning("server error %s: %s", op.get("code"), op.get("detail"))

    def accept(self, env: Envelope) -> bool:
        """True when `env` is new; records its position (dedupe)."""
        pos = self.positions.get(env.ch)
        if pos is not None and env.seq <= pos[1]:
            return False
        epoch = pos[0] if pos else ""
        self.positions[env.ch] = (epoch, env.seq)
        return True

    def _gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        if self.on_gap is not None:
            self.on_gap(gap)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

        attempt = 0
        while True:
            try:
                async with connect(
                    self.ws_url,
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    additional_headers={"Authorization": f"Bearer {self.token()}"},
                    max_size=None,
                    open_timeout=10,
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    attempt = 0
                    await ws.send(json.dumps(self.subscribe_op()))
                    self._connected.set()
                    refresher = asyncio.create_task(self._refresh_loop(ws))
                    try:
                        async for frame in ws:
                            await self._on_frame(frame)
                    finally:
                        refresher.cancel()
                        self._connected.clear()
                        self._ws = None
                    if stops_after(ws.close_code):
                        raise SubscribeError(f"server closed the connection ({ws.close_code} {ws.close_reason})")
            except InvalidStatus as e:
                status = e.response.status_code
                if status in (401, 403):
                    await self._queue.put(SubscribeError(f"server refused the connection: HTTP {status}"))
                    return
            except SubscribeError as e:
                await self._queue.put(e)
                return
            except (OSError, ConnectionClosed, InvalidMessage, asyncio.TimeoutError) as e:
                # InvalidMessage: the handshake was cut short; like any lost connection, try again
                log.info("connection lost (%s); reconnecting", e.__class__.__name__)
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1

    async def _on_frame(self, frame: str | bytes) -> None:
        obj = json.loads(frame)
        if isinstance(obj, dict):
            self.handle_control(obj)
            self._control(obj)
            if obj.get("op") == "error" and obj.get("code") == "forbidden" and obj.get("ch") in self.initial:
                raise SubscribeError(f"forbidden: {obj.get('detail')}")
            return
        for env in iter_envelopes(obj):
            if self.accept(env):
                await self._deliver(env)

    async def _deliver(self, env: Envelope) -> None:
        """Hand a new envelope on (the iterator's queue; the kernel relay forwards it instead)."""
        await self._queue.put(env)

    def _control(self, op: dict[str, Any]) -> None:
        """Every control op, in order with the envelopes (the kernel relay forwards them)."""

    async def _refresh_loop(self, ws: Any) -> None:
        if not callable(self._token):
            return
        while True:
            welcome = next((e for e in reversed(self.events) if e.get("op") in ("welcome", "refreshed")), None)
            exp = float(welcome["exp"]) if welcome else time.time() + 60
            await asyncio.sleep(max(1.0, (exp - time.time()) * 0.8))
            await ws.send(json.dumps({"op": "refresh", "token": self.token()}))

    async def wait_connected(self) -> None:
        """Wait until the subscribe op has been sent on a live connection."""
        await self._connected.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Envelope]:
        self.start()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await self.close()


def subscribe(channels: Iterable[str] | Mapping[str, Any], **kwargs: Any) -> Client:
    """`async for env in subscribe(["sys.myhost"], backfill=100): ...`"""
    return Client(channels, **kwargs)
