"""The kernel relay: a chart's data through the kernel when the browser can't reach the server.

Where the browser cannot address the server (Colab, VS Code with a remote kernel, a proxy
without jupyter-server-proxy), the kernel subscribes to the chart's channels with the Python
client (exact resume) and forwards what the server sends as widget messages. It runs on one
daemon thread with its own event loop, so the chart keeps moving while a cell runs: ipykernel's
`iopub_socket` is a `BackgroundSocket` whose sends are queued to its IOPub thread, so a comm
message may be sent from any thread.

Messages, browser -> kernel: `{"type": "relay-start", "view": id, "ch": {ch: start}}` (the
browser says where each channel resumes: its `subscribe` op), `{"type": "relay-stop", "view"}`.
Kernel -> browser: `{"type": "relay", "gen", "first", "from", "heads", "text", "thinning"}`
where `text` is a JSON array of server frames (control ops and arrays of envelopes) and `gen`
counts restarts; `{"type": "relay-end", "gen", "fatal"}` when the server refused us for good.

Jupyter servers drop IOPub traffic past 1,000 msgs/s or 1 MB/s (the defaults). All relays of a
kernel together send one message per chart per tick (`TICK`) and at most `BYTES_PER_SECOND`;
past that, each tick's envelopes are thinned to what the chart can draw (per time bucket the
first, the last and each field's min and max) and the message says `thinning`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .client import Client, SubscribeError
from .protocol import Envelope, dumps
from .snapshot import Env, SnapshotError, thin

VIA_ENV = "PULSEBOARD_VIA"
VIAS = ("kernel", "direct")
TICK = 0.05  # seconds between messages to the browser, per relayed chart (20/s: far below 1,000/s)
BYTES_PER_SECOND = 256_000  # all relays of the kernel together: a quarter of Jupyter's default limit
MAX_PENDING = 50_000  # envelopes held per chart between ticks; past it the oldest go (thinning)
MAX_CHANNELS = 256  # channels one chart follows at most (as live.ts)
MAX_VIEWS = 64  # views remembered per chart (a reload is a new view)
BEAT = 2.0  # an empty message this often when nothing flows, so the browser knows we are here
IGNORED_OPS = {"welcome", "refreshed", "pong", "ack"}  # the kernel's own connection business

Send = Callable[[dict[str, Any]], None]


def via_setting(via: str | None) -> str:
    """`via=` or `PULSEBOARD_VIA`: "kernel", "direct" or "" (direct, falling back to the kernel)."""
    value = via if via is not None else os.environ.get(VIA_ENV, "")
    if value not in ("", *VIAS):
        raise ValueError(f'via must be None, "kernel" or "direct" (got {value!r}; also see {VIA_ENV})')
    return value


def first_start(window: float | None, max_points: int) -> dict[str, int]:
    """The browser's first start per channel (live.ts): enough for the window at 20 Hz."""
    backfill = max_points if window is None else min(max_points, int(-(-window * 20 // 1)))
    return {"backfill": backfill}


class _Loop:
    """One daemon thread and event loop for every relay of this kernel, and the shared tick."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.relays: set[Relay] = set()
        thread = threading.Thread(target=self._main, name="pulseboard-relay", daemon=True)
        thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.create_task(self._tick())
        self.loop.run_forever()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            relays = list(self.relays)
            for relay in relays:
                try:
                    relay.flush(BYTES_PER_SECOND * TICK / len(relays))
                except Exception:  # a closed comm must not stop the other charts
                    self.relays.discard(relay)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)


_shared: _Loop | None = None
_shared_lock = threading.Lock()


def _loop() -> _Loop:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _Loop()
        return _shared


class _RelayClient(Client):
    """The Python client, handing frames to its relay in order instead of to an iterator."""

    def __init__(self, relay: Relay, gen: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relay = relay
        self.gen = gen

    async def _deliver(self, env: Envelope) -> None:
        self.relay.take(self.gen, env)

    def _control(self, op: dict[str, Any]) -> None:
        if op.get("op") not in IGNORED_OPS:
            self.relay.take(self.gen, op)


class Relay:
    """One chart's relay. `start`/`stop`/`close` may be called from any thread."""

    def __init__(self, send: Send, reader: Callable[[], tuple[str, str]], token: Callable[[], str]) -> None:
        # A widget's method is held weakly: a relay never keeps a dropped chart alive.
        self._send = weakref.WeakMethod(send) if isinstance(send, types.MethodType) else (lambda: send)
        self._reader = reader
        self._token = token
        self.gen = 0
        self.views: dict[str, None] = {}  # browser views that asked, oldest first (at most MAX_VIEWS)
        self._client: _RelayClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._items: deque[Envelope | dict[str, Any]] = deque()
        self._envs = 0
        self._dropped = 0
        self._first = False
        self._from: dict[str, Any] = {}
        self._fatal = ""
        self._last_sent = 0.0
        self._credit = 0.0  # bytes it may send now: unused budget is kept, up to one second's share
        self.sent_messages = 0
        self.sent_bytes = 0

    # --- from the kernel's thread ----------------------------------------------------------

    def on_msg(self, content: Any) -> bool:
        """Handle a `relay-*` message from the browser; False when it is not one."""
        if not isinstance(content, dict) or content.get("type") not in ("relay-start", "relay-stop"):
            return False
        view = str(content.get("view") or "")
        if content["type"] == "relay-stop":
            _loop().call(self._stop_view, view)
            return True
        ch = content.get("ch")
        if not isinstance(ch, dict) or not ch or len(ch) > MAX_CHANNELS or not all(isinstance(k, str) for k in ch):
            self._deliver({"type": "relay-end", "gen": self.gen,
                           "fatal": f"bad relay-start: 1 to {MAX_CHANNELS} channels by name"})
            return True
        self.start(ch, view)
        return True

    def start(self, ch: dict[str, Any], view: str = "") -> None:
        """(Re)subscribe from the given starting points (the browser's positions)."""
        try:
            url, _ = self._reader()
        except SnapshotError as e:  # no server the kernel can reach: tell the browser
            self._deliver({"type": "relay-end", "gen": self.gen, "fatal": str(e)})
            return
        _loop().call(self._restart, url, dict(ch), view)

    def close(self) -> None:
        if _shared is not None:
            _loop().call(self._halt)

    # --- on the relay thread ---------------------------------------------------------------

    def _restart(self, url: str, ch: dict[str, Any], view: str) -> None:
        self._halt()
        if view:
            self.views[view] = None
            while len(self.views) > MAX_VIEWS:  # views that went away without a word
                del self.views[next(iter(self.views))]
        self.gen += 1
        self._first, self._from, self._fatal = True, ch, ""
        self._client = _RelayClient(self, self.gen, ch, url=url, token=self._token)
        self._task = asyncio.get_running_loop().create_task(self._run(self._client))
        _loop().relays.add(self)

    async def _run(self, client: _RelayClient) -> None:
        try:
            async for _ in client:
                pass  # envelopes come through `take`; the iterator only raises
        except SubscribeError as e:
            if client.gen == self.gen:
                self._fatal = str(e)

    def _stop_view(self, view: str) -> None:
        self.views.pop(view, None)
        if not self.views:
            self._halt()

    def _halt(self) -> None:
        _loop().relays.discard(self)
        if self._task is not None:
            self._task.cancel()
        self._task = self._client = None
        self._items.clear()
        self._envs = self._dropped = 0

    def take(self, gen: int, item: Envelope | dict[str, Any]) -> None:
        if gen != self.gen:
            return
        if isinstance(item, Envelope):
            if self._envs >= MAX_PENDING:
                self._drop_oldest()
            self._envs += 1
        self._items.append(item)

    def _drop_oldest(self) -> None:
        for i, old in enumerate(self._items):
            if isinstance(old, Envelope):
                del self._items[i]
                self._envs -= 1
                self._dropped += 1
                return

    def flush(self, allowance: float) -> None:
        """Send what came since the last tick in one message, within `allowance` bytes."""
        now = time.monotonic()
        self._credit = min(allowance / TICK, self._credit + allowance)
        if self._fatal:
            # What the server said last (its `error` op) goes first, then the end.
            if self._items:
                self._send_items(now, allowance)
            self._deliver({"type": "relay-end", "gen": self.gen, "fatal": self._fatal})
            self._halt()
            return
        if self._items or now - self._last_sent >= BEAT:
            self._send_items(now, allowance)

    def _send_items(self, now: float, allowance: float) -> None:
        items = list(self._items)
        heads = self._heads(items)
        thinning = self._dropped > 0
        self._items.clear()
        self._envs = self._dropped = 0
        size = sum(len(i.raw) + 1 for i in items if isinstance(i, Envelope))
        if size > self._credit:
            items = _thinned(items, max(allowance, self._credit), size)
            thinning = True
        text = _frames_text(items)
        self._credit = max(0.0, self._credit - len(text))
        msg: dict[str, Any] = {"type": "relay", "gen": self.gen, "heads": heads, "text": text,
                               "thinning": thinning}
        if self._first:
            msg.update(first=True, **{"from": self._from})
            self._first = False
        self._last_sent = now
        self.sent_messages += 1
        self.sent_bytes += len(text)
        self._deliver(msg)

    def _heads(self, items: list[Envelope | dict[str, Any]]) -> dict[str, list[Any]]:
        """Each channel's position before this message (for a view that joins mid-stream)."""
        client = self._client
        if client is None:
            return {}
        heads: dict[str, list[Any]] = {ch: [pos[0], pos[1]] for ch, pos in client.positions.items()}
        for item in items:  # the client's positions already count what this message holds
            if isinstance(item, Envelope) and item.ch in heads and heads[item.ch][1] >= item.seq:
                heads[item.ch][1] = item.seq - 1
        return heads

    def _deliver(self, msg: dict[str, Any]) -> None:
        send = self._send()
        if send is not None:
            send(msg)


def _thinned(items: list[Envelope | dict[str, Any]], allowance: float, size: int) -> list[Envelope | dict[str, Any]]:
    """Keep what a chart needs to draw each channel's line within `allowance` bytes."""
    by_ch: dict[str, list[Envelope]] = {}
    for item in items:
        if isinstance(item, Envelope):
            by_ch.setdefault(item.ch, []).append(item)
    count = sum(len(v) for v in by_ch.values())
    per_env = size / max(1, count)
    keep: set[tuple[str, int]] = set()
    for ch, envs in by_ch.items():
        points = max(4, int(allowance / len(by_ch) / per_env))
        kept = thin([Env(e.ch, e.seq, e.ts, e.data) for e in envs], points, None)
        keep.update((ch, e.seq) for e in kept)
    return [i for i in items if not isinstance(i, Envelope) or (i.ch, i.seq) in keep]


def _frames_text(items: list[Envelope | dict[str, Any]]) -> str:
    """Server frames as one JSON array: control ops as they came, envelopes batched between them."""
    parts: list[str] = []
    run: list[str] = []
    for item in items:
        if isinstance(item, Envelope):
            run.append(item.raw)
            continue
        if run:
            parts.append("[" + ",".join(run) + "]")
            run = []
        parts.append(dumps(item))
    if run:
        parts.append("[" + ",".join(run) + "]")
    return "[" + ",".join(parts) + "]"


__all__ = ["BYTES_PER_SECOND", "TICK", "VIA_ENV", "Relay", "first_start", "via_setting"]
