"""Server-Sent Events: one `text/event-stream` per client, resumable through its event ids.

Every event carries `id: <cursor>`, the positions of all the stream's channels
after that event, so a browser's automatic `Last-Event-ID` reconnect resumes
exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from pulseboard.protocol import (
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_SLOW,
    TOO_LARGE,
    UNAVAILABLE,
    Backfill,
    ChannelSync,
    Envelope,
    Grants,
    Live,
    Positions,
    PulseboardError,
    Since,
    Start,
    bad_request,
    batch_frame,
    check_channel,
    decode_cursor,
    dumps,
    encode_cursor,
)

from ..api import authenticate, int_param, node_of
from ..brokers.base import Replay
from ..fanout import FrameCache, Part, live_parts, replay_chunks
from ..node import Node

log = logging.getLogger("pulseboard.sse")
RETRY_MS = 1000  # the reconnect delay the browser is told to use
END_GRACE = 2.0  # seconds an ending stream gets to write its last events before the connection is cut
HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Type": "text/event-stream; charset=utf-8",
}


def sse_event(data: str, event_id: str, name: str | None = None) -> str:
    """One event; `data` is single-line JSON (our JSON never holds a raw newline)."""
    head = f"event: {name}\n" if name else ""
    return f"{head}id: {event_id}\ndata: {data}\n\n"


async def sse_endpoint(request: Request) -> Response:
    node = node_of(request)
    grants = await authenticate(request, allow_ticket=True)
    resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or None
    starts, positions = request_starts(request, grants, resume)
    if node.shutting_down:
        raise PulseboardError(UNAVAILABLE, "server is shutting down")
    if request.method == "HEAD":  # a probe: the checks passed, no stream
        return Response(headers=HEADERS)
    stream = SseStream(node, grants, positions)
    node.clients.add(stream)
    node.metrics.connections.labels(transport="sse").inc()
    try:
        node.limits.admit(grants.sub, stream)  # issue 13: connections per sub; freed in cleanup
        for ch, start in starts.items():
            # Subscribing (and any refusal) happens before the 200; the replays are sent
            # once the stream runs, paced by the client's buffer.
            replay, sync = await node.start_sync(stream, ch, start)
            stream.pending.append((ch, replay, sync))
    except BaseException:
        stream.cleanup()
        raise
    return EventStreamResponse(stream)


def request_starts(
    request: Request, grants: Grants, cursor: str | None
) -> tuple[dict[str, Start], Positions]:
    """Each requested channel's starting point, from `ch`, `backfill` and a resume cursor.

    Raises 400 for a bad name or cursor, 403 for a channel the grants can't read.
    Without `ch`, the cursor's channels are used.
    """
    node = node_of(request)
    positions = decode_cursor(cursor) if cursor else {}
    names = request.query_params.getlist("ch") or list(positions)
    if not names:
        raise bad_request("name at least one channel: ?ch=NAME (repeatable)")
    channels = list(dict.fromkeys(check_channel(c) for c in names))
    limit = node.settings.max_channels_per_client
    if len(channels) > limit:
        raise PulseboardError(TOO_LARGE, f"over {limit} channels in one request")
    for ch in channels:
        grants.check_read(ch)
    backfill = int_param(request, "backfill", 0, 0, 1 << 31) or 0
    starts: dict[str, Start] = {}
    for ch in channels:
        if ch in positions:
            epoch, seq = positions[ch]
            starts[ch] = Since(seq, epoch)
        else:
            starts[ch] = Backfill(backfill) if backfill else Live()
    return starts, {ch: pos for ch, pos in positions.items() if ch in starts}


class SseStream:
    """One SSE client: its channels' positions and a bounded queue of encoded events."""

    def __init__(self, node: Node, grants: Grants, positions: Positions) -> None:
        self.node = node
        self.grants = grants
        self.syncs: dict[str, ChannelSync] = {}
        self.positions: Positions = dict(positions)
        self._out: deque[tuple[str, int]] = deque()
        self._out_bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # set while the queue is under half the bound
        self._room.set()
        self.pending: list[tuple[str, Replay, ChannelSync]] = []  # subscriptions whose replay is still to send
        self._ending = False  # no more events: the writer flushes what is queued and stops
        self._ended = asyncio.Event()
        self.ending = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._cleaned = False

    # --- events -----------------------------------------------------------------

    def send(self, data: str, name: str | None = None, envelopes: int = 0) -> None:
        """Queue an event (its id is the positions now); a client lagging past the bound is dropped."""
        if self._ending:
            return
        text = sse_event(data, encode_cursor(self.positions), name)
        limit = self.node.settings.max_buffer
        if self._out_bytes + len(text) > limit:
            self.node.metrics.drops.inc()
            log.info("dropping sse client %s: lagging past %d bytes", self.grants.sub, limit)
            self._out.clear()
            self._out_bytes = 0
            self._room.set()
            self.end(CLOSE_TOO_SLOW, "too slow: lag over the limit; resume with Last-Event-ID")
            return
        self._out.append((text, envelopes))
        self._out_bytes += len(text)
        self._ready.set()
        if self._out_bytes > limit // 2:
            self._room.clear()

    async def send_envelopes(self, envs: Sequence[Envelope]) -> None:
        """Replayed envelopes, in events of bounded size, each queued once there is room."""
        for chunk in replay_chunks(envs, self.node.settings.max_buffer // 4):
            await self._room.wait()
            if self._ending:
                return
            last = chunk[-1]
            self.positions[last.ch] = (self.positions[last.ch][0], last.seq)
            self.send(batch_frame(e.raw for e in chunk), envelopes=len(chunk))

    async def send_pending(self) -> None:
        """Each pending channel's `subscribed` event, its replay and what arrived meanwhile; then live."""
        try:
            await self._send_pending()
        except Exception as e:  # never leave channels held silently: end, the client resumes
            log.error("sse replay for %s failed: %r", self.grants.sub, e)
            self.end(1011, "replay failed: reconnect to resume")

    async def _send_pending(self) -> None:
        while self.pending and not self._ending:
            ch, replay, sync = self.pending.pop(0)
            epoch, top, msgs = replay.info.epoch, replay.info.seq, replay.msgs
            self.positions[ch] = (epoch, msgs[0].seq - 1 if msgs else top)
            self.send(dumps({"ch": ch, "epoch": epoch, "seq": top, "recovered": replay.recovered}), "subscribed")
            await self.send_envelopes(msgs)
            last = msgs[-1].seq if msgs else top
            held = sync.finish(epoch, last)
            self.positions[ch] = (epoch, last)
            await self.send_envelopes(held)

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        live = live_parts(self.syncs, parts)
        if not live:
            return
        n = 0
        for ch, skip, envs in live:
            self.positions[ch] = (self.syncs[ch].epoch, envs[-1].seq)
            n += len(envs) - skip
        self.send(cache.frame(live), envelopes=n)

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        sync = self.syncs.get(ch)
        if sync is not None:
            sync.epoch, sync.seq = epoch, seq
            self.positions[ch] = (epoch, seq)
            self.send(dumps({"ch": ch, "epoch": epoch, "seq": seq}), "reset")

    def end(self, code: int, detail: str) -> None:
        """Send `event: close` and end the stream once the queue is written."""
        if self._ending:
            return
        self._ending = True
        self.ending.set()
        self._out.append((sse_event(dumps({"code": code, "detail": detail}), encode_cursor(self.positions),
                                    "close"), 0))
        self._ready.set()

    async def close(self, code: int, reason: str = "") -> None:
        """Graceful shutdown: tell the client, end the stream, wait (briefly) until it has."""
        self.end(code, reason or "server going away")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ended.wait(), 3.0)

    # --- lifecycle ----------------------------------------------------------------

    def arm_expiry(self) -> None:
        delay = max(0.0, self.grants.exp - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.end, CLOSE_TOKEN_EXPIRED, "token expired: reconnect with a fresh token or ticket"
        )

    async def write(self, send: Send) -> None:
        """Write queued events as they come, a heartbeat comment when idle, until the stream ends."""
        heartbeat = self.node.settings.heartbeat
        counter = self.node.metrics.messages_out.labels(transport="sse")
        await body(send, f"retry: {RETRY_MS}\n".encode())  # the first event's block goes on from here
        while True:
            if not self._out and not self._ending:
                try:
                    await asyncio.wait_for(self._ready.wait(), heartbeat)
                except asyncio.TimeoutError:
                    await body(send, b": ping\n\n")
                    continue
            self._ready.clear()
            if self._out:
                texts, n = [], 0
                while self._out:
                    text, k = self._out.popleft()
                    texts.append(text)
                    n += k
                self._out_bytes = 0
                self._room.set()
                await body(send, "".join(texts).encode())
                if n:
                    counter.inc(n)
            if self._ending and not self._out:
                await body(send, b"", more=False)
                return

    async def stuck(self) -> None:
        """Return when the stream ended but the client has not taken its last events in time.

        The response is then left unfinished, which makes the server cut the connection.
        """
        await self.ending.wait()
        await asyncio.sleep(END_GRACE)
        log.info("cutting the sse connection of %s: not reading", self.grants.sub)

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._ending = True
        self._ended.set()
        self._room.set()
        if self._expiry is not None:
            self._expiry.cancel()
        for ch in list(self.syncs):
            self.node.stop_sync(self, ch)
        self.node.clients.discard(self)
        self.node.limits.leave(self)
        self.node.metrics.connections.labels(transport="sse").dec()


class EventStreamResponse(Response):
    """Streams an `SseStream` until it ends, the client goes away or the server shuts down."""

    media_type = "text/event-stream"

    def __init__(self, stream: SseStream) -> None:
        self.stream = stream
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            stream.arm_expiry()
            writer = asyncio.ensure_future(stream.write(send))
            gone = asyncio.ensure_future(wait_disconnect(receive))
            stuck = asyncio.ensure_future(stream.stuck())
            replays = asyncio.ensure_future(stream.send_pending())
            try:
                await asyncio.wait({writer, gone, stuck}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (writer, gone, stuck, replays):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if writer.done() and not writer.cancelled():
                exc = writer.exception()
                if exc is not None and not isinstance(exc, OSError):
                    log.error("sse stream of %s failed: %r", stream.grants.sub, exc)
        except OSError:
            pass  # the client went away mid-write
        finally:
            stream.cleanup()


async def body(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone (`http.disconnect`)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
