"""The WebSocket transport: auth before the upgrade, then ops in, frames out.

The session (`..session`) decides what to send; this module writes it. A fan-out
tick writes straight into every connection whose socket takes data, with no task
switch per client (`DirectSocket`: data frames are framed here and written to the
socket of uvicorn's `websockets` sans-I/O protocol, which still does the handshake,
reading and control frames); a socket that is not writable, or a server other than
uvicorn's `websockets-sansio`, is served by the connection's writer task.

Compression: browsers offer permessage-deflate. It is negotiated without context
takeover either way (`WsProtocol`), so each compressed frame stands alone and is
compressed once per tick for every client that gets it (`FrameCache.deflated`), not
once per client with a context of its own; frames under `DEFLATE_MIN` go plain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.protocol import State as WsState

from pulseboard.closes import INTERNAL, Close
from pulseboard.protocol import HTTP_STATUS, SUBPROTOCOL, PulseboardError

from ..fanout import DEFLATE_MIN, DEFLATE_WINDOW_BITS, PER_CLIENT_LEVEL, FrameCache, Part, deflate
from ..limits import PARSE_ON_LOOP, LimitError
from ..node import Node
from ..session import JSON_FRAMES, Session, State, read_frame
from .common import act, admit, authenticate, expiry_delay, new_session, stop_all

log = logging.getLogger("pulseboard.ws")
FLUSH_BUDGET = 1 << 20  # bytes written in one go before the rest waits its turn on the loop
TOKEN_WAYS = "Authorization: Bearer, bearer.<jwt> subprotocol or ?token="


async def deny(ws: WebSocket, err: PulseboardError) -> None:
    """Answer the upgrade request with a plain HTTP error; no WebSocket is made."""
    headers = err.headers() if isinstance(err, LimitError) else {}  # 429: Retry-After
    await ws.send_denial_response(JSONResponse(err.to_dict(), status_code=HTTP_STATUS[err.code], headers=headers))


async def websocket_endpoint(ws: WebSocket) -> None:
    node: Node = ws.app.state.node
    try:
        grants = await authenticate(node, ws.headers, ws.query_params, allow_ticket=False, how=TOKEN_WAYS)
    except PulseboardError as e:
        await deny(ws, e)
        return
    if node.shutting_down:
        await deny(ws, PulseboardError("unavailable", "server is shutting down"))
        return
    conn = WsConnection(ws, node, new_session(node, grants, JSON_FRAMES))
    try:
        admit(node, conn)  # a subject over its connection limit gets 429 before the upgrade
    except PulseboardError as e:
        await deny(ws, e)
        return
    node.clients.add(conn)
    node.metrics.connections.labels(transport="ws").inc()
    try:
        protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in protocols else None)
        await conn.run()
    finally:
        node.clients.discard(conn)
        node.metrics.connections.labels(transport="ws").dec()
        conn.cleanup()


# No context takeover in either direction: what the server sends can be compressed once
# for all clients, and no connection keeps a compressor or decompressor between messages.
DEFLATE_OFFER = ServerPerMessageDeflateFactory(
    server_no_context_takeover=True,
    client_no_context_takeover=True,
    server_max_window_bits=DEFLATE_WINDOW_BITS,
    client_max_window_bits=DEFLATE_WINDOW_BITS,
    compress_settings={"memLevel": 5},
)


class WsProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc]
    """uvicorn's `websockets-sansio` protocol, answering a deflate offer without context takeover,
    and failing a connection (a frame over the size limit: 1009, text that isn't UTF-8: 1007,
    a broken frame: 1002) with a close frame the client gets to read.

    uvicorn writes that close frame and closes the socket at once. A client that is still
    sending (the rest of an oversize frame, the next op) then has bytes arriving at a closed
    socket, and the kernel answers them with a reset: the client's write fails, and a client
    like websockets' (or a browser) drops the connection without reading the close frame
    waiting for it. Here the server half-closes instead (its close frame, then FIN), reads
    and drops whatever the client still sends, and closes the socket at the client's EOF,
    or after `close_timeout` (10 s, as for any close) at the latest (a lingering close;
    what websockets' own server does after failing a connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.conn.available_extensions:  # uvicorn's `ws_per_message_deflate` (on by default)
            self.conn.available_extensions = [DEFLATE_OFFER]
        self.lingering = False  # failed: the close frame and FIN are sent, the rest is read and dropped

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.conn.receive_data(data)  # websockets' parser discards it after `fail`
            self.conn.events_received()
            self.conn.data_to_send()  # nothing is written after the close frame and FIN
            return
        super().data_received(data)

    def handle_parser_exception(self) -> None:
        sent = self.conn.close_sent
        code, reason = (sent.code, sent.reason) if sent is not None else (1006, "")  # 1006: no frame
        self.lingering = True
        # A close already sent (uvicorn's own 1007, or ours before the bad frame) stays the one sent;
        # `fail` then only half-closes and switches the parser to discarding.
        self.conn.fail(code, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:  # (paused while a message waited for the app)
            self.read_paused = False
            self.transport.resume_reading()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)


_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack


def text_frame(data: bytes, compress: bool, cache: FrameCache | None = None) -> bytes:
    """A whole server-to-client text frame (RFC 6455 5.2: FIN, unmasked), compressed when
    the client negotiated deflate and the frame is worth it (RSV1 marks it compressed)."""
    first = 0x81
    if compress and len(data) >= DEFLATE_MIN:
        data = cache.deflated(data) if cache is not None else deflate(data, PER_CLIENT_LEVEL)
        first = 0xC1
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return _H16(first, 126, n) + data
    return _H64(first, 127, n) + data


class DirectSocket:
    """Writes data frames straight to the socket of uvicorn's `websockets` protocol, synchronously."""

    __slots__ = ("compress", "conn", "proto", "transport")

    def __init__(self, proto: Any) -> None:
        self.proto = proto
        self.conn = proto.conn  # websockets' ServerProtocol: handshake, reading, control frames
        self.transport = proto.transport
        # (the handshake is done before the app runs: the extensions are known)
        self.compress = any(isinstance(e, PerMessageDeflate) for e in self.conn.extensions)

    @classmethod
    def of(cls, ws: WebSocket) -> DirectSocket | None:
        proto = getattr(getattr(ws, "_receive", None), "__self__", None)  # uvicorn's protocol: send is wrapped
        if all(hasattr(proto, a) for a in ("conn", "transport", "writable", "close_sent")):
            return cls(proto)
        return None

    def writable(self) -> bool:
        """The socket takes data now (not paused by flow control, not closing)."""
        return (not self.transport.is_closing() and self.proto.writable.is_set() and not self.proto.close_sent
                and self.conn.state is WsState.OPEN)  # (a close from the peer: no data frame after it)

    async def drained(self) -> None:
        await self.proto.writable.wait()

    def write_one(self, data: bytes, cache: FrameCache) -> None:
        self.transport.write(text_frame(data, self.compress, cache))

    def write(self, items: list[tuple[bytes, int]]) -> None:
        if self.conn.state is not WsState.OPEN:
            raise InvalidState("the WebSocket is closing")
        compress = self.compress
        self.transport.write(b"".join([text_frame(data, compress) for data, _ in items]))


class WsConnection:
    """One WebSocket client: a session, written as soon as the socket takes it."""

    __slots__ = ("__weakref__", "_dead", "_expiry", "_finished", "_metrics", "_writing", "direct", "node", "session",
                 "ws")  # (weakly referenced by the node's connection slots)

    def __init__(self, ws: WebSocket, node: Node, session: Session) -> None:
        self.ws = ws
        self.node = node
        self.session = session
        self.direct = DirectSocket.of(ws)
        self._writing: asyncio.Task[None] | None = None  # only while the socket is not writable, or closing
        self._dead = False  # a write failed: the peer is gone
        self._finished: asyncio.Future[None] | None = None  # made by close(), done when run() ends
        self._expiry: asyncio.TimerHandle | None = None
        self._metrics = node.metrics

    # --- called by the fan-out ----------------------------------------------------

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        d = self.direct
        if d is not None and not self._dead and (self._writing is None or self._writing.done()) and d.writable():
            out = self.session.deliver(parts, cache, now=True)  # straight to the socket: the hot path
            if out is not None:
                try:
                    d.write_one(out[0], cache)
                except Exception:  # the peer is gone: the reader sees the disconnect
                    self._dead = True
                    return
                self._metrics.ws_messages += out[1]
                self._metrics.ws_frames += 1
                return
        else:
            self.session.deliver(parts, cache)
        self.flush()

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        self.session.reset(ch, epoch, seq)
        self.flush()

    # --- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is queued now if the socket takes it; otherwise start a writer task for it."""
        s = self.session
        if self._dead or (self._writing is not None and not self._writing.done()):
            return  # the writer takes what is queued, in order
        if s.state is State.OPEN and self.direct is not None:
            budget = FLUSH_BUDGET  # a long replay to a fast socket goes on in the writer task,
            try:  # a slice at a time, so it never holds the loop for everyone else
                while s.wants_write() and self.direct.writable() and budget > 0:
                    items = s.take()
                    budget -= sum(len(data) for data, _ in items)
                    self._write(items)
                    s.pump()
            except Exception:  # the peer is gone: the reader sees the disconnect
                self._dead = True
                return
        if s.wants_write() or s.state is not State.OPEN:  # (the writer marks the socket dead once it closes)
            self._writing = asyncio.get_running_loop().create_task(self._writer())

    def _write(self, items: list[tuple[bytes, int]]) -> None:
        assert self.direct is not None
        self.direct.write(items)
        self._count(items)

    def _count(self, items: list[tuple[bytes, int]]) -> None:
        m = self._metrics
        for _, k in items:
            if k:
                m.ws_messages += k
                m.ws_frames += 1

    async def _writer(self) -> None:
        """Write what `flush` could not, as the socket drains; close when the session says so."""
        s = self.session
        try:
            while s.wants_write():
                items = s.take()
                if self.direct is not None:
                    await self.direct.drained()
                    self._write(items)
                else:
                    for data, _ in items:
                        await self.ws.send_text(data.decode())
                    self._count(items)
                s.pump()
                await asyncio.sleep(0)  # let the loop serve others between slices of a long replay
            if s.state is not State.OPEN and s.close_reason is not None:
                self._dead = True  # nothing more is written
                with contextlib.suppress(Exception):
                    await self.ws.close(s.close_reason.code, s.close_reason.reason)
        except Exception as e:  # the peer is gone (or a bug): stop writing; the reader sees the disconnect
            self._dead = True
            if not isinstance(e, (WebSocketDisconnect, OSError, RuntimeError, InvalidState)):
                log.error("writing to %s failed: %r", s.grants.sub, e)
                with contextlib.suppress(Exception):
                    await self.ws.close(INTERNAL.code, INTERNAL.reason)

    async def close(self, code: int, reason: str = "") -> None:
        """Close (graceful shutdown): what is queued is written first."""
        self._finished = asyncio.get_running_loop().create_future()
        self.session.close(Close(code, reason))
        self.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._finished), 3.0)

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        """Read ops until the peer has gone; the writer may stop first (a close, or a dead socket)
        without cutting short the ops already received."""
        s = self.session
        s.op("welcome", sub=s.grants.sub, exp=s.grants.exp, node=self.node.id)
        self._arm_expiry()
        self.flush()
        try:
            await self._reader()
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        except Exception as e:  # a broker failure mid-op: end this connection, the client resumes
            log.error("connection of %s failed: %r", s.grants.sub, e)
            with contextlib.suppress(Exception):
                await self.ws.close(INTERNAL.code, INTERNAL.reason)
        finally:
            self._dead = True
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(None)
            if self._writing is not None:
                self._writing.cancel()
                with contextlib.suppress(BaseException):
                    await self._writing

    def cleanup(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        stop_all(self.node, self)

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(expiry_delay(self.session.grants), self._expire)

    def _expire(self) -> None:
        if not self.session.expire(time.time()):  # refreshed meanwhile
            self._arm_expiry()
        self.flush()

    async def _reader(self) -> None:
        s = self.session
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            exp = s.grants.exp
            text = msg.get("text")
            # a big frame is CPU work (parsing, checking every value: a 750 KB frame of small lists
            # took 0.3 s): off the event loop, as a big HTTP body is; frames are still taken in order
            read = (await asyncio.to_thread(read_frame, text, s.limits.max_message_size)
                    if text is not None and len(text) > PARSE_ON_LOOP else None)
            actions = s.receive(text, time.time(), read)
            self.flush()
            await act(self.node, self, actions)
            if s.grants.exp != exp:
                self._arm_expiry()
            # frames that came in together are all queued already, and taking one from the queue
            # doesn't yield: without this, a burst read in one go (256 KiB: 13,000 tiny ops) ran
            # as one step that held the loop, and every other client, for over 200 ms
            await asyncio.sleep(0)


__all__ = ["WsProtocol", "text_frame", "websocket_endpoint"]
