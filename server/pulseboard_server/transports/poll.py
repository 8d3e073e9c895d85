"""Long-polling: each request is a short-lived subscriber that resumes from an opaque cursor.

`GET poll?ch=A&cursor=C` answers at once when anything is after the cursor,
else waits (up to `poll_timeout`) for the first live delivery. The cursor in the
answer holds every requested channel's position after the answer's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from pulseboard.protocol import (
    UNAVAILABLE,
    ChannelSync,
    Envelope,
    Grants,
    Positions,
    PulseboardError,
    bad_request,
    dumps,
    encode_cursor,
)

from ..api import authenticate, node_of
from ..fanout import FrameCache, Part, live_parts
from ..node import Node
from .sse import request_starts, wait_disconnect

HEADERS = {"Cache-Control": "no-store, no-transform"}


async def poll_endpoint(request: Request) -> Response:
    node = node_of(request)
    grants = await authenticate(request, allow_ticket=True)
    cursor = request.query_params.get("cursor") or None
    starts, positions = request_starts(request, grants, cursor)
    timeout = timeout_param(request, node.settings.poll_timeout)
    if node.shutting_down:
        raise PulseboardError(UNAVAILABLE, "server is shutting down")
    poll = Poll(node, grants, positions)
    node.clients.add(poll)
    node.metrics.connections.labels(transport="poll").inc()
    try:
        node.limits.admit(grants.sub, poll)  # issue 13: connections per sub
        for ch, start in starts.items():
            replay, sync = await node.start_sync(poll, ch, start)
            info = replay.info
            # Channels without a position get a `subscribed` op; resumed ones only when something is missing.
            announce = ch not in positions or not replay.recovered
            poll.subscribed(ch, info.epoch, info.seq, replay.recovered, replay.msgs, sync, announce)
        if not poll.has_news() and cursor is not None and timeout > 0:
            await poll.wait(timeout, request)
        text = poll.answer()
    finally:
        node.limits.leave(poll)
        poll.cleanup()
    return Response(text, media_type="application/json", headers=HEADERS)


def timeout_param(request: Request, limit: float) -> float:
    """`?timeout=S` shortens the wait (0 answers at once); it never exceeds the server's limit."""
    raw = request.query_params.get("timeout")
    if raw is None:
        return limit
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("'timeout' must be a number of seconds") from None
    if not value >= 0:
        raise bad_request("'timeout' must be 0 or more")
    return min(value, limit)


class Poll:
    """One long-poll request: collects what is after the cursor, bounded in bytes."""

    def __init__(self, node: Node, grants: Grants, positions: Positions) -> None:
        self.node = node
        self.grants = grants
        self.syncs: dict[str, ChannelSync] = {}
        self.positions: Positions = dict(positions)
        self.msgs: list[str] = []
        self.ops: list[dict[str, object]] = []
        self._bytes = 0
        self._full: set[str] = set()  # channels cut short by the size bound: they continue next poll
        self._news = asyncio.Event()
        self._cleaned = False

    def has_news(self) -> bool:
        return bool(self.msgs or self.ops)

    def add(self, ch: str, envs: Sequence[Envelope]) -> None:
        """Take `envs` (one channel, seq order) until the answer is full; the cursor follows."""
        if not envs or ch in self._full:
            return
        limit = self.node.settings.max_buffer
        epoch = self.positions[ch][0]
        for env in envs:
            if self._bytes and self._bytes + len(env.raw) > limit:
                self._full.add(ch)
                break
            self.msgs.append(env.raw)
            self._bytes += len(env.raw) + 1
            self.positions[ch] = (epoch, env.seq)
        self._news.set()

    def subscribed(
        self,
        ch: str,
        epoch: str,
        top: int,
        recovered: bool,
        msgs: Sequence[Envelope],
        sync: ChannelSync,
        announce: bool,
    ) -> None:
        self.positions[ch] = (epoch, msgs[0].seq - 1 if msgs else top)
        if announce:
            op = {"op": "subscribed", "ch": ch, "epoch": epoch, "seq": top, "recovered": recovered}
            self.ops.append(op)
        self.add(ch, msgs)
        last = msgs[-1].seq if msgs else top
        held = sync.finish(epoch, last)
        if ch in self._full:
            return
        self.positions[ch] = (epoch, last)
        self.add(ch, held)

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        for ch, skip, envs in live_parts(self.syncs, parts):
            self.add(ch, envs[skip:])

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        sync = self.syncs.get(ch)
        if sync is not None and ch not in self._full:
            sync.epoch, sync.seq = epoch, seq
            self.positions[ch] = (epoch, seq)
            self.ops.append({"op": "reset", "ch": ch, "epoch": epoch, "seq": seq})
            self._news.set()

    async def wait(self, timeout: float, request: Request) -> None:
        """Until news, the timeout, the client leaving or the server shutting down."""
        news = asyncio.ensure_future(self._news.wait())
        gone = asyncio.ensure_future(wait_disconnect(request.receive))
        try:
            await asyncio.wait({news, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (news, gone):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def close(self, code: int, reason: str = "") -> None:
        """Graceful shutdown: answer now with what is held."""
        self._news.set()

    def answer(self) -> str:
        n = len(self.msgs)
        if n:
            self.node.metrics.messages_out.labels(transport="poll").inc(n)
        cursor = encode_cursor(self.positions)
        return f'{{"cursor":{dumps(cursor)},"msgs":[{",".join(self.msgs)}],"ops":{dumps(self.ops)}}}'

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        for ch in list(self.syncs):
            self.node.stop_sync(self, ch)
        self.node.clients.discard(self)
        self.node.metrics.connections.labels(transport="poll").dec()
