"""Server-Sent Events: one `text/event-stream` per client, resumable through its event ids.

Every event carries `id: <cursor>`, the positions of all the stream's channels
after that event, so a browser's automatic `Last-Event-ID` reconnect resumes
exactly where it stopped. The session (`..session`) decides what to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from pulseboard.closes import Close
from pulseboard.protocol import UNAVAILABLE, PulseboardError, dumps, encode_cursor

from ..fanout import FrameCache, Part
from ..node import Node
from ..session import Encoder, Session, State
from .common import admit, authenticate, expiry_delay, new_session, request_starts, start, stop_all, wait_disconnect

log = logging.getLogger("pulseboard.sse")
RETRY_MS = 1000  # the reconnect delay the browser is told to use
END_GRACE = 2.0  # seconds an ending stream gets to write its last events before the connection is cut
HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Content-Type": "text/event-stream; charset=utf-8",
}
TOKEN_WAYS = "Authorization: Bearer or ?token="


def sse_event(data: bytes, session: Session, name: str | None = None) -> bytes:
    """One event, its id the positions now; `data` is single-line JSON (ours never holds a raw newline)."""
    head = b"event: " + name.encode() + b"\n" if name else b""
    return head + b"id: " + encode_cursor(session.positions()).encode() + b"\ndata: " + data + b"\n\n"


def _op(name: str, fields: dict[str, Any], session: Session) -> bytes:
    return sse_event(dumps(fields).encode(), session, name)


def _close(close: Close, session: Session) -> bytes:
    return sse_event(dumps({"code": close.code, "detail": close.reason}).encode(), session, "close")


SSE_EVENTS = Encoder(_op, sse_event, _close)


async def sse_endpoint(request: Request) -> Response:
    node: Node = request.app.state.node
    grants = await authenticate(node, request.headers, request.query_params, allow_ticket=True, how=TOKEN_WAYS)
    resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or None
    starts, positions = request_starts(node.settings, request.query_params, grants, resume)
    if node.shutting_down:
        raise PulseboardError(UNAVAILABLE, "server is shutting down")
    if request.method == "HEAD":  # a probe: the checks passed, no stream
        return Response(headers=HEADERS)
    stream = SseStream(node, new_session(node, grants, SSE_EVENTS, positions=positions))
    node.clients.add(stream)
    node.metrics.connections.labels(transport="sse").inc()
    try:
        admit(node, stream)  # connections per subject; stop_all gives the slot back
        # Subscribing (and any refusal) happens before the 200; the replays are queued
        # paced by the client's buffer, and written once the stream runs.
        for a in stream.session.subscribe(starts):
            await start(node, stream, a.ch, a.start)
    except BaseException:
        stream.cleanup()
        raise
    return EventStreamResponse(stream)


class SseStream:
    """One SSE client: a session, written by one task per stream."""

    def __init__(self, node: Node, session: Session) -> None:
        self.node = node
        self.session = session
        self._wake = asyncio.Event()
        self._ended = asyncio.Event()
        self.ending = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._cleaned = False

    def flush(self) -> None:
        if self.session.state is not State.OPEN:
            self.ending.set()
            self._wake.set()
        elif self.session.wants_write():
            self._wake.set()

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        self.session.deliver(parts, cache)
        self.flush()

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        self.session.reset(ch, epoch, seq)
        self.flush()

    async def close(self, code: int, reason: str = "") -> None:
        """Graceful shutdown: tell the client, end the stream, wait (briefly) until it has."""
        self.session.close(Close(code, reason or "server going away"))
        self.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ended.wait(), 3.0)

    # --- lifecycle ----------------------------------------------------------------

    def arm_expiry(self) -> None:
        self._expiry = asyncio.get_running_loop().call_later(expiry_delay(self.session.grants), self._expire)

    def _expire(self) -> None:
        self.session.expire(time.time())
        self.flush()

    async def write(self, send: Send) -> None:
        """Write queued events as they come, a heartbeat comment when idle, until the stream ends."""
        s = self.session
        heartbeat = self.node.settings.heartbeat
        counter = self.node.metrics.messages_out.labels(transport="sse")
        await body(send, f"retry: {RETRY_MS}\n".encode())  # the first event's block goes on from here
        while True:
            if not s.wants_write() and s.state is State.OPEN:
                # Not asyncio.wait_for: on Python < 3.12 it can swallow a cancel that coincides with
                # the event, and the stream then never ends (the connection is never released).
                timer = asyncio.get_running_loop().call_later(heartbeat, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
                if not s.wants_write() and s.state is State.OPEN:  # woken by the timer: a quiet period
                    self._wake.clear()
                    await body(send, b": ping\n\n")
                    continue
            self._wake.clear()
            items = s.take()
            if items:
                await body(send, b"".join(data for data, _ in items))
                n = sum(k for _, k in items)
                if n:
                    counter.inc(n)
            s.pump()
            if s.state is not State.OPEN and not s.wants_write():
                await body(send, b"", more=False)
                return

    async def stuck(self) -> None:
        """Return when the stream ended but the client has not taken its last events in time.

        The response is then left unfinished, which makes the server cut the connection.
        """
        await self.ending.wait()
        await asyncio.sleep(END_GRACE)
        log.info("cutting the sse connection of %s: not reading", self.session.grants.sub)

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self._ended.set()
        if self._expiry is not None:
            self._expiry.cancel()
        stop_all(self.node, self)
        self.node.clients.discard(self)
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
            try:
                await asyncio.wait({writer, gone, stuck}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (writer, gone, stuck):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if writer.done() and not writer.cancelled():
                exc = writer.exception()
                if exc is not None and not isinstance(exc, OSError):
                    log.error("sse stream of %s failed: %r", stream.session.grants.sub, exc)
        except OSError:
            pass  # the client went away mid-write
        finally:
            stream.cleanup()


async def body(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})
