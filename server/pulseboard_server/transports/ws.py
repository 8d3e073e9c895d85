"""The WebSocket transport: auth before the upgrade, then ops in, frames out.

The session (`..session`) decides what to send; this module writes it. A fan-out
tick writes straight into every connection whose socket takes data, with no task
switch per client (`DirectSocket`: frames are still built by `websockets`' sans-I/O
protocol, the one uvicorn runs); a socket that is not writable, or a server other
than uvicorn's `websockets-sansio`, is served by the connection's writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidState

from pulseboard.protocol import HTTP_STATUS, SUBPROTOCOL, PulseboardError

from ..closes import INTERNAL, Close
from ..fanout import FrameCache, Part
from ..node import Node
from ..session import JSON_FRAMES, Session, State
from .common import act, authenticate, expiry_delay, limits, stop_all

log = logging.getLogger("pulseboard.ws")
TOKEN_WAYS = "Authorization: Bearer, bearer.<jwt> subprotocol or ?token="


async def deny(ws: WebSocket, err: PulseboardError) -> None:
    """Answer the upgrade request with a plain HTTP error; no WebSocket is made."""
    await ws.send_denial_response(JSONResponse(err.to_dict(), status_code=HTTP_STATUS[err.code]))


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
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in protocols else None)
    conn = WsConnection(ws, node, Session(
        grants, limits(node.settings), JSON_FRAMES,
        on_error=lambda code: node.metrics.errors.labels(code=code).inc(), on_drop=node.metrics.drops.inc,
    ))
    node.clients.add(conn)
    node.metrics.connections.labels(transport="ws").inc()
    try:
        await conn.run()
    finally:
        node.clients.discard(conn)
        node.metrics.connections.labels(transport="ws").dec()
        conn.cleanup()


class DirectSocket:
    """Writes frames through uvicorn's `websockets` sans-I/O protocol object, synchronously."""

    def __init__(self, proto: Any) -> None:
        self.proto = proto

    @classmethod
    def of(cls, ws: WebSocket) -> DirectSocket | None:
        proto = getattr(getattr(ws, "_receive", None), "__self__", None)  # uvicorn's protocol: send is wrapped
        if all(hasattr(proto, a) for a in ("conn", "transport", "writable", "close_sent")):
            return cls(proto)
        return None

    def writable(self) -> bool:
        p = self.proto
        return bool(p.writable.is_set() and not p.close_sent and not getattr(p, "disconnected", False)
                    and not p.transport.is_closing())

    async def drained(self) -> None:
        await self.proto.writable.wait()

    def write(self, items: list[tuple[bytes, int]]) -> None:
        conn = self.proto.conn
        for data, _ in items:
            conn.send_text(data)
        self.proto.transport.write(b"".join(conn.data_to_send()))


class WsConnection:
    """One WebSocket client: a session, written as soon as the socket takes it."""

    def __init__(self, ws: WebSocket, node: Node, session: Session) -> None:
        self.ws = ws
        self.node = node
        self.session = session
        self.direct = DirectSocket.of(ws)
        self._wake = asyncio.Event()  # the writer task has work: a socket not writable, or a close
        self._done = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._out = node.metrics.messages_out.labels(transport="ws")

    # --- called by the fan-out ----------------------------------------------------

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        self.session.deliver(parts, cache)
        self.flush()

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        self.session.reset(ch, epoch, seq)
        self.flush()

    # --- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is queued now if the socket takes it; otherwise leave it to the writer."""
        s = self.session
        if s.state is State.OPEN and not self._wake.is_set() and self.direct is not None:
            try:
                while s.wants_write() and self.direct.writable():
                    self._write(s.take())
                    s.pump()
            except Exception:  # the peer is gone: the writer task finds out and ends
                self._wake.set()
                return
        if s.wants_write() or s.state is not State.OPEN:
            self._wake.set()

    def _write(self, items: list[tuple[bytes, int]]) -> None:
        assert self.direct is not None
        self.direct.write(items)
        self._count(items)

    def _count(self, items: list[tuple[bytes, int]]) -> None:
        n = 0
        for _, k in items:
            if k:
                n += k
                self.node.metrics.frames_out.inc()
        if n:
            self._out.inc(n)

    async def _writer(self) -> None:
        """Write what `flush` could not; close when the session says so. A failed write ends it."""
        s = self.session
        try:
            while True:
                await self._wake.wait()
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
                self._wake.clear()
                if s.state is not State.OPEN and s.close_reason is not None:
                    with contextlib.suppress(Exception):
                        await self.ws.close(s.close_reason.code, s.close_reason.reason)
                    return
        except Exception as e:  # the peer is gone (or a bug): stop writing; the reader sees the disconnect
            if not isinstance(e, (WebSocketDisconnect, OSError, RuntimeError, InvalidState)):
                log.error("writing to %s failed: %r", s.grants.sub, e)
                with contextlib.suppress(Exception):
                    await self.ws.close(INTERNAL.code, INTERNAL.reason)

    async def close(self, code: int, reason: str = "") -> None:
        """Close (graceful shutdown): what is queued is written first."""
        self.session.close(Close(code, reason))
        self.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._done.wait(), 3.0)

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        """Read ops until the peer has gone; the writer may stop first (a close, or a dead socket)
        without cutting short the ops already received."""
        s = self.session
        s.op("welcome", sub=s.grants.sub, exp=s.grants.exp, node=self.node.id)
        self._arm_expiry()
        writer = asyncio.create_task(self._writer())
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
            self._done.set()
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer

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
            actions = s.receive(msg.get("text"), time.time())
            self.flush()
            await act(self.node, self, actions)
            if s.grants.exp != exp:
                self._arm_expiry()


__all__ = ["websocket_endpoint"]
