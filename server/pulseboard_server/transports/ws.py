"""The WebSocket transport: auth before the upgrade, then ops in, frames out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from pulseboard.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_PROTOCOL,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_SLOW,
    FORBIDDEN,
    HTTP_STATUS,
    SUBPROTOCOL,
    TOO_LARGE,
    ChannelSync,
    Grants,
    Ping,
    Publish,
    PulseboardError,
    Refresh,
    Subscribe,
    Unsubscribe,
    bad_request,
    batch_frame,
    control,
    decode_client_frame,
    error_frame,
)

from ..auth import origin_allowed, token_from_request, unauthorized
from ..fanout import FrameCache, Part, live_parts, replay_chunks
from ..limits import check_json_depth
from ..node import Node

log = logging.getLogger("pulseboard.ws")


def op_id(text: str | None) -> dict[str, Any]:
    """The `id` of a refused op, so the client can match the error to its request."""
    if text is None or '"id"' not in text:
        return {}
    try:
        obj = json.loads(text, parse_constant=lambda _: None)  # no NaN echoed back (issue 13)
    except (ValueError, RecursionError):  # RecursionError: nested too deep (issue 13)
        return {}
    return {"id": obj["id"]} if isinstance(obj, dict) and "id" in obj else {}


async def deny(ws: WebSocket, err: PulseboardError) -> None:
    """Answer the upgrade request with a plain HTTP error; no WebSocket is made."""
    await ws.send_denial_response(JSONResponse(err.to_dict(), status_code=HTTP_STATUS[err.code]))


async def websocket_endpoint(ws: WebSocket) -> None:
    node: Node = ws.app.state.node
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), node.settings):
        await deny(ws, PulseboardError(FORBIDDEN, "origin not allowed: see --allowed-origin"))
        return
    token, protocols = token_from_request(ws.headers, ws.query_params)
    try:
        if token is None:
            raise unauthorized("a token is required (Authorization: Bearer, bearer.<jwt> subprotocol or ?token=)")
        grants = await node.verifier.verify_async(token)
        node.limits.admit(grants.sub, ws)  # issue 13: connections per sub; freed in `finally` or by GC
    except PulseboardError as e:
        await deny(ws, e)
        return
    if node.shutting_down:
        await deny(ws, PulseboardError("unavailable", "server is shutting down"))
        return
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in protocols else None)
    conn = WsConnection(ws, node, grants)
    node.clients.add(conn)
    node.metrics.connections.labels(transport="ws").inc()
    try:
        await conn.run()
    finally:
        node.clients.discard(conn)
        node.limits.leave(ws)
        node.metrics.connections.labels(transport="ws").dec()
        conn.cleanup()


class WsConnection:
    """One WebSocket client: its grants, subscriptions and bounded outgoing buffer."""

    def __init__(self, ws: WebSocket, node: Node, grants: Grants) -> None:
        self.ws = ws
        self.node = node
        self.grants = grants
        self.syncs: dict[str, ChannelSync] = {}
        self._out: deque[tuple[str, int]] = deque()
        self._out_bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # set while the buffer is under half full
        self._room.set()
        self._closing = False
        self._violations = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- outgoing ---------------------------------------------------------------

    def send(self, text: str, envelopes: int = 0) -> None:
        """Queue a frame; a client lagging past the buffer bound is closed with 4429."""
        if self._closing:
            return
        if self._out_bytes + len(text) > self.node.settings.max_buffer:
            self.node.metrics.drops.inc()
            log.info("closing %s: lagging past %d bytes", self.grants.sub, self.node.settings.max_buffer)
            self._out.clear()
            self._out_bytes = 0
            self._room.set()
            self._spawn(self.close(CLOSE_TOO_SLOW, "too slow: lag over the limit"))
            return
        self._out.append((text, envelopes))
        self._out_bytes += len(text)
        self._ready.set()
        if self._out_bytes > self.node.settings.max_buffer // 2:
            self._room.clear()

    async def send_paced(self, text: str, envelopes: int) -> None:
        """Queue a replay frame once the buffer has room, so a long replay never trips 4429."""
        await self._room.wait()
        self.send(text, envelopes)

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        live = live_parts(self.syncs, parts)
        if live:
            n = sum(len(envs) - skip for _, skip, envs in live)
            self.send(cache.frame(live), n)

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        sync = self.syncs.get(ch)
        if sync is not None:
            sync.epoch, sync.seq = epoch, seq
            self.send(control("reset", ch=ch, epoch=epoch, seq=seq))

    async def _writer(self) -> None:
        metrics = self.node.metrics
        while True:
            await self._ready.wait()
            while self._out:
                text, n = self._out.popleft()
                self._out_bytes -= len(text)
                if self._out_bytes <= self.node.settings.max_buffer // 2:
                    self._room.set()
                await self.ws.send_text(text)
                if n:
                    metrics.messages_out.labels(transport="ws").inc(n)
                    metrics.frames_out.inc()
            self._ready.clear()

    async def close(self, code: int, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        node = self.node
        self.send(control("welcome", sub=self.grants.sub, exp=self.grants.exp, node=node.id))
        self._arm_expiry()
        writer = asyncio.create_task(self._writer())
        reader = asyncio.create_task(self._reader())
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (writer, reader):
            task.cancel()
        for task in done:
            exc = task.exception() if not task.cancelled() else None
            if exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError, RuntimeError)):
                log.error("connection of %s failed: %r", self.grants.sub, exc)
                await self.close(1011, "server error")  # a close frame, not a dropped connection

    def cleanup(self) -> None:
        self._closing = True
        self._room.set()
        if self._expiry is not None:
            self._expiry.cancel()
        for ch in list(self.syncs):
            self.node.stop_sync(self, ch)
        for task in self._tasks:
            task.cancel()

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, self.grants.exp - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self.close(CLOSE_TOKEN_EXPIRED, "token expired: refresh it"))
        )

    async def _reader(self) -> None:
        limit = self.node.settings.max_message_size
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = msg.get("text")
            try:
                if text is None:
                    raise bad_request("binary frames are not supported: send JSON text")
                if len(text) > limit:
                    raise PulseboardError(TOO_LARGE, f"frame over the {limit}-byte limit")
                check_json_depth(text)  # issue 13: deep nesting is a 400, not a RecursionError
                await self._handle(text)
                self._violations = 0
            except PulseboardError as e:
                self._violation(e, **op_id(text))

    def _violation(self, err: PulseboardError, **extra: object) -> None:
        self.node.metrics.errors.labels(code=err.code).inc()
        self.send(error_frame(err, **extra))
        if err.code in ("bad_request", TOO_LARGE):
            self._violations += 1
            log.info("protocol error from %s: %s", self.grants.sub, err.detail)
            if self._violations >= self.node.settings.max_violations:
                self._spawn(self.close(CLOSE_PROTOCOL, "too many protocol errors"))

    async def _handle(self, text: str) -> None:
        op = decode_client_frame(text)
        if isinstance(op, Subscribe):
            await self._subscribe(op)
        elif isinstance(op, Unsubscribe):
            for ch in op.channels:
                self.node.stop_sync(self, ch)
            self.send(control("unsubscribed", ch=list(op.channels)))
        elif isinstance(op, Publish):
            try:
                self.node.limits.take_publish(self.grants.sub)  # issue 13: publish rate per sub
                env = await self.node.publish(self.grants, op.ch, op.data, op.ts)
            except PulseboardError as e:
                self.node.metrics.errors.labels(code=e.code).inc()
                self.send(error_frame(e, id=op.id, ch=op.ch))
                return
            self.send(control("ack", id=op.id, seq=env.seq, ch=env.ch))
        elif isinstance(op, Refresh):
            await self._refresh(op.token)
        elif isinstance(op, Ping):
            self.send(control("pong", ts=time.time()))

    async def _subscribe(self, op: Subscribe) -> None:
        limit = self.node.settings.max_channels_per_client
        for ch, start in op.channels.items():
            if not self.grants.can_read(ch):
                err = PulseboardError(FORBIDDEN, f"token may not read {ch!r}")
                self.node.metrics.errors.labels(code=FORBIDDEN).inc()
                self.send(error_frame(err, ch=ch))
                continue
            if ch not in self.syncs and len(self.syncs) >= limit:
                self.send(error_frame(PulseboardError(TOO_LARGE, f"over {limit} channels"), ch=ch))
                continue
            try:
                replay, sync = await self.node.start_sync(self, ch, start)
            except PulseboardError as e:
                self.send(error_frame(e, ch=ch))
                continue
            info = replay.info
            self.send(
                control("subscribed", ch=ch, epoch=info.epoch, seq=info.seq, recovered=replay.recovered)
            )
            msgs = replay.msgs
            for chunk in replay_chunks(msgs, self.node.settings.max_buffer // 4):
                await self.send_paced(batch_frame(e.raw for e in chunk), len(chunk))
            last = msgs[-1].seq if msgs else info.seq
            held = sync.finish(info.epoch, last)
            if held:
                self.send(batch_frame(e.raw for e in held), len(held))

    async def _refresh(self, token: str) -> None:
        try:
            grants = await self.node.verifier.verify_async(token)
        except PulseboardError as e:
            self.send(error_frame(PulseboardError(FORBIDDEN, f"refresh refused: {e.detail}")))
            return
        if grants.sub != self.grants.sub:
            self.send(error_frame(PulseboardError(FORBIDDEN, "refresh token is for another subject")))
            return
        self.grants = grants
        self._arm_expiry()
        for ch in [c for c in self.syncs if not grants.can_read(c)]:
            self.node.stop_sync(self, ch)
            self.send(error_frame(PulseboardError(FORBIDDEN, f"token may no longer read {ch!r}"), ch=ch))
        self.send(control("refreshed", exp=grants.exp))


__all__ = ["CLOSE_FORBIDDEN", "websocket_endpoint"]
