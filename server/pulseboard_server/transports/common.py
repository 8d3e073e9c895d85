"""What every transport shares: authenticating a client, and acting on its session's actions."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from starlette.datastructures import QueryParams
from starlette.types import Receive

from pulseboard.protocol import (
    FORBIDDEN,
    TOO_LARGE,
    Backfill,
    Live,
    Positions,
    PulseboardError,
    Since,
    Start,
    bad_request,
    check_channel,
    decode_cursor,
)

from ..auth import origin_allowed, token_from_request, unauthorized
from ..config import Settings
from ..fanout import FrameCache, Part
from ..grants import Grants
from ..node import Node
from ..session import Action as Action
from ..session import DoPublish, DoRefresh, Encoder, Session, StartSub, StopSub

D = TypeVar("D", int, None)

class Connection(Protocol):
    """A transport's client: its session, and how it is told there is something to write."""

    session: Session

    def deliver(self, parts: Sequence[Part], cache: FrameCache) -> None: ...

    def reset(self, ch: str, epoch: str, seq: int) -> None: ...

    def flush(self) -> None: ...


def new_session(node: Node, grants: Grants, encoder: Encoder, **kw: Any) -> Session:
    """A session for one client of any transport, wired to the node's bounds and metrics."""
    return Session(
        grants, node.session_bounds, encoder,
        on_error=lambda code: node.metrics.errors.labels(code=code).inc(), on_drop=node.metrics.drops.inc, **kw,
    )


async def authenticate(
    node: Node, headers: Mapping[str, str], query: QueryParams, *, allow_ticket: bool, how: str
) -> Grants:
    """The one place every transport admits a client: origin, then a ticket or a bearer token.

    `how` names the ways a token may be given, for the error. A streaming client then
    takes one of its subject's connection slots with `admit` (the HTTP API does not).
    """
    if not origin_allowed(headers.get("origin"), headers.get("host"), node.settings):
        raise PulseboardError(FORBIDDEN, "origin not allowed: see --allowed-origin")
    ticket = query.get("ticket")
    if ticket and allow_ticket:
        grants, jti, _exp = node.verifier.check_ticket(ticket)
        if not await node.broker.claim_once("ticket:" + jti, node.settings.ticket_ttl + 10):
            raise unauthorized("ticket already used: ask for a new one")
        return grants
    token, _ = token_from_request(headers, query)
    if token is None:
        raise unauthorized(f"a token is required ({how})")
    return await node.verifier.verify_async(token)


def admit(node: Node, conn: Connection) -> None:
    """Count `conn` against its subject's open connections (ws, sse, poll; no subject takes every slot): 429 past
    `--max-connections-per-sub`. Called right after `authenticate`, before any subscription;
    `stop_all` (every transport's cleanup) gives the slot back."""
    node.limits.admit(conn.session.grants.sub, conn)


async def start(node: Node, conn: Connection, ch: str, start: Start, quiet_resume: bool = False) -> None:
    """Register `conn` on `ch` and hand its replay to the session; raise what the broker refused.

    With `quiet_resume`, a channel resumed without a gap gets no `subscribed` op (long-poll).
    """
    session = conn.session
    try:
        await node.fanout.add(conn, ch)
        replay = await node.broker.replay(ch, start)
    except BaseException:
        session.syncs.pop(ch, None)
        node.fanout.discard(conn, ch)
        raise
    node.metrics.replays.labels(recovered=str(replay.recovered).lower()).inc()
    node.metrics.replayed.inc(len(replay.msgs))
    info = replay.info
    announce = not (quiet_resume and ch in session.resume and replay.recovered)
    session.subscribed(ch, info.epoch, info.seq, replay.recovered, replay.msgs, announce)


async def act(node: Node, conn: Connection, actions: Sequence[Action]) -> None:
    """Carry out what a session asked for (WebSocket ops), flushing after each answer."""
    session = conn.session
    for a in actions:
        if isinstance(a, StartSub):
            try:
                await start(node, conn, a.ch, a.start)
            except PulseboardError as e:
                session.refused(a.ch, e)
        elif isinstance(a, StopSub):
            node.fanout.discard(conn, a.ch)
        elif isinstance(a, DoPublish):
            try:
                node.limits.take_publish(session.grants.sub)  # 429 past the publish rate (no flooding)
                session.grants.check_publish(a.op.ch)
                # channel, data and ts were checked with the frame (a big one on a worker thread):
                # checking `data` again here would put that CPU work back on the event loop
                ts = time.time() if a.op.ts is None else a.op.ts
                [env] = await node.publish_many([(a.op.ch, a.op.data, ts, None)])
            except PulseboardError as e:
                session.published(a.op, e)
            else:
                session.published(a.op, env)
        elif isinstance(a, DoRefresh):
            try:
                grants: Grants | PulseboardError = await node.verifier.verify_async(a.token)
            except PulseboardError as e:
                grants = e
            for stop in session.refreshed(grants):
                node.fanout.discard(conn, stop.ch)
        conn.flush()


def stop_all(node: Node, conn: Connection) -> None:
    """The connection is gone: unregister its channels and give back its connection slot."""
    for ch in conn.session.closed():
        node.fanout.discard(conn, ch)
    node.limits.leave(conn)


def expiry_delay(grants: Grants) -> float:
    return max(0.0, grants.exp - time.time())


def int_param(query: QueryParams, name: str, default: D, lo: int, hi: int) -> int | D:
    """The integer query parameter `name` in [lo, hi], `default` when absent; else `bad_request`."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name!r} must be an integer") from None
    if not lo <= value <= hi:
        raise bad_request(f"{name!r} must be between {lo} and {hi}")
    return value


def float_param(query: QueryParams, name: str) -> float | None:
    """The finite number query parameter `name` (unix seconds), None when absent; else `bad_request`."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name!r} must be unix seconds (a number)") from None
    if not math.isfinite(value):
        raise bad_request(f"{name!r} must be a finite number")
    return value


def request_starts(settings: Settings, query: QueryParams, grants: Grants, cursor: str | None
                   ) -> tuple[dict[str, Start], Positions]:
    """Each requested channel's starting point, from `ch`, `backfill` and a resume cursor (SSE, poll).

    Raises 400 for a bad name or cursor, 403 for a channel the grants can't read.
    Without `ch`, the cursor's channels are used.
    """
    positions = decode_cursor(cursor) if cursor else {}
    names = query.getlist("ch") or list(positions)
    if not names:
        raise bad_request("name at least one channel: ?ch=NAME (repeatable)")
    channels = list(dict.fromkeys(check_channel(c) for c in names))
    limit = settings.max_channels_per_client
    if len(channels) > limit:
        raise PulseboardError(TOO_LARGE, f"over {limit} channels in one request")
    for ch in channels:
        grants.check_read(ch)
    backfill = int_param(query, "backfill", 0, 0, 1 << 31)
    starts: dict[str, Start] = {}
    for ch in channels:
        if ch in positions:
            epoch, seq = positions[ch]
            starts[ch] = Since(seq, epoch)
        else:
            starts[ch] = Backfill(backfill) if backfill else Live()
    return starts, {ch: pos for ch, pos in positions.items() if ch in starts}


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has gone (`http.disconnect`)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
