"""Long-polling: each request is a short-lived subscriber that resumes from an opaque cursor.

`GET poll?ch=A&cursor=C` answers at once when anything is after the cursor,
else waits (up to `poll_timeout`) for the first live delivery. The cursor in the
answer holds every requested channel's position after the answer's messages.
An answer holds at most `max_buffer` bytes of messages: a channel cut short there
continues from the cursor on the next poll (the session's `overflow="cut"`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from pulseboard.protocol import UNAVAILABLE, PulseboardError, bad_request, dumps, encode_cursor

from ..fanout import FrameCache, Part
from ..node import Node
from ..session import JSON_FRAMES, Session
from .common import admit, authenticate, new_session, request_starts, start, stop_all, wait_disconnect

HEADERS = {"Cache-Control": "no-store, no-transform"}
TOKEN_WAYS = "Authorization: Bearer or ?token="



async def poll_endpoint(request: Request) -> Response:
    node: Node = request.app.state.node
    grants = await authenticate(node, request.headers, request.query_params, allow_ticket=True, how=TOKEN_WAYS)
    cursor = request.query_params.get("cursor") or None
    starts, positions = request_starts(node.settings, request.query_params, grants, cursor)
    timeout = timeout_param(request, node.settings.poll_timeout)
    if node.shutting_down:
        raise PulseboardError(UNAVAILABLE, "server is shutting down")
    poll = Poll(node, new_session(node, grants, JSON_FRAMES, overflow="cut", positions=positions))
    node.clients.add(poll)
    node.metrics.connections.labels(transport="poll").inc()
    try:
        admit(node, poll)  # connections per subject; stop_all gives the slot back
        # Channels without a position get a `subscribed` op; resumed ones only when something is missing.
        for a in poll.session.subscribe(starts):
            await start(node, poll, a.ch, a.start, quiet_resume=True)
        if not poll.session.wants_write() and cursor is not None and timeout > 0:
            await poll.wait(timeout, request)
        data = poll.answer()
    finally:
        poll.cleanup()
    return Response(data, media_type="application/json", headers=HEADERS)


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
    """One long-poll request: a session whose queue becomes the answer."""

    def __init__(self, node: Node, session: Session) -> None:
        self.node = node
        self.session = session
        self._news = asyncio.Event()
        self._cleaned = False

    def flush(self) -> None:
        if self.session.wants_write():
            self._news.set()

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None:
        self.session.deliver(parts, cache)
        self.flush()

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        self.session.reset(ch, epoch, seq)
        self.flush()

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

    def answer(self) -> bytes:
        items = self.session.take()
        msgs = [data for data, n in items if n]
        ops = [data for data, n in items if not n]
        if msgs:
            self.node.metrics.messages_out.labels(transport="poll").inc(len(msgs))
        cursor = dumps(encode_cursor(self.session.positions())).encode()
        return b'{"cursor":' + cursor + b',"msgs":[' + b",".join(msgs) + b'],"ops":[' + b",".join(ops) + b"]}"

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        stop_all(self.node, self)
        self.node.clients.discard(self)
        self.node.metrics.connections.labels(transport="poll").dec()
