"""The HTTP API: publish, history, channels, ticket, healthz, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pulseboard.protocol import (
    BAD_REQUEST,
    FORBIDDEN,
    HTTP_STATUS,
    NOT_FOUND,
    TOO_LARGE,
    PulseboardError,
    bad_request,
    check_channel,
    check_data,
    check_key,
    check_pattern,
    check_ts,
    dumps,
    plain_numbers_all,
)

from .brokers.base import PublishItem, history_cap
from .brokers.downsample import MAX_POINTS, MIN_POINTS
from .grants import Grants
from .limits import PARSE_ON_LOOP, LimitError, loads
from .node import Node
from .transports import common as transport_common


def node_of(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def error_response(err: PulseboardError) -> JSONResponse:
    """The one place a refusal becomes an HTTP answer: `{"error", "detail"}` and its status."""
    headers = {"WWW-Authenticate": "Bearer"} if err.code == "unauthorized" else {}
    status = HTTP_STATUS.get(err.code, 400)
    if isinstance(err, LimitError):
        headers.update(err.headers())
        status = err.status or status
    return JSONResponse(err.to_dict(), status_code=status, headers=headers)


async def authenticate(request: Request, allow_ticket: bool = False) -> Grants:
    """The caller's grants, from a bearer token or (where allowed) a one-time ticket."""
    return await transport_common.authenticate(
        node_of(request), request.headers, request.query_params, allow_ticket=allow_ticket,
        how="Authorization: Bearer or ?token=",
    )


async def read_json(request: Request) -> Any:
    """The request body as JSON: bounded in size (413), depth and time (408); else 400."""
    return await parse_json(await read_body(request))


async def parse_json(body: bytes) -> Any:
    if len(body) > PARSE_ON_LOOP:  # parsing a big body is CPU work: off the event loop
        return await asyncio.to_thread(loads, body)
    return loads(body)


async def read_body(request: Request) -> bytes:
    """The request body, bounded in size (413) and time (408)."""
    settings = node_of(request).settings
    limit = settings.max_message_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PulseboardError(TOO_LARGE, f"body over the {limit}-byte limit")
    body = bytearray()

    async def drain() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise PulseboardError(TOO_LARGE, f"body over the {limit}-byte limit")

    try:  # wait_for, not asyncio.timeout: that one is 3.11+, and we support 3.10
        await asyncio.wait_for(drain(), settings.body_timeout or None)
    except asyncio.TimeoutError:  # 3.10 raises this, not the builtin TimeoutError
        raise LimitError(
            BAD_REQUEST, f"body not received within {settings.body_timeout:g} s", status=408
        ) from None
    return bytes(body)


async def publish(request: Request) -> Response:
    grants = await authenticate(request)
    raw = await read_body(request)
    body = await parse_json(raw)
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        raise bad_request('body is {"ch": ..., "data": {...}} or a non-empty list of them')
    node = node_of(request)
    node.limits.take_publish(grants.sub, len(items))  # 429 rate_limited + Retry-After: one subject can't flood the node
    # Checking every field of a big body is CPU work too: off the loop, so one publisher's
    # 10,000-message body (or one message of 150,000 small lists) doesn't hold up everyone else's frames.
    if len(items) > CHECK_ON_LOOP or len(raw) > PARSE_ON_LOOP:
        checked = await asyncio.to_thread(check_items, grants, items, time.time())
    else:
        checked = check_items(grants, items, time.time())
    envs = await node.publish_many(checked)  # every item checked above; one commit on the store
    return JSONResponse({"seqs": [e.seq for e in envs]})


CHECK_ON_LOOP = 200  # items of a body checked on the event loop; more on a worker thread


def check_items(grants: Grants, items: list[dict[str, Any]], now: float) -> list[PublishItem]:
    """Every item of a publish body checked (channel, grant, key, data, ts) before any is published."""
    checked: list[PublishItem] = []
    allowed: set[str] = set()  # channels already checked in this body
    datas: list[Any] = [item.get("data") for item in items]
    # The usual body (flat metrics) has its data checked for all items at once; otherwise item
    # by item, so the first item at fault is the one named.
    plain = len(datas) > 1 and plain_numbers_all(datas)
    scope = ""
    for item, data in zip(items, datas, strict=True):
        ch = item.get("ch")
        if type(ch) is not str or ch not in allowed:
            ch = check_channel(ch)
            grants.check_publish(ch)
            allowed.add(ch)
        key = item.get("key")
        if key is not None:  # idempotency key: a retried message gets its first seq back
            scope = scope or publisher_scope(grants.sub)
            key = f"{scope}:{check_key(key)}"
        checked.append((ch, dict(data) if plain else check_data(data), check_ts(item.get("ts"), now), key))
    return checked


def publisher_scope(sub: str) -> str:
    """The prefix (`<scope>:<key>`) of an idempotency key as the broker keeps it: scoped to the
    publisher (the token's `sub`), so a publisher finds only its own keys and can't probe for
    another's (their existence and seq would tell it about a channel it may not read)."""
    return hashlib.blake2b(sub.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()



async def history(request: Request) -> Response:
    grants = await authenticate(request, allow_ticket=True)
    ch = check_channel(request.query_params.get("ch"))
    grants.check_read(ch)
    node = node_of(request)
    q = request.query_params
    ranged = any(k in q for k in ("from", "to", "points"))
    if ranged and any(k in q for k in ("since", "limit")):
        raise bad_request("ask either since/limit (exact) or from/to/points (a range), not both")
    if ranged:
        q = request.query_params
        t0, t1 = transport_common.float_param(q, "from"), transport_common.float_param(q, "to")
        if t0 is not None and t1 is not None and t0 > t1:
            raise bad_request("'from' must not be after 'to'")
        points = transport_common.int_param(q, "points", 2000, MIN_POINTS, MAX_POINTS)
        info, msgs, downsampled = await node.broker.history_range(ch, t0, t1, points)
    else:
        since = transport_common.int_param(q, "since", None, 0, 1 << 62)
        limit = transport_common.int_param(q, "limit", 100, 1, history_cap(node.settings.history))
        info, msgs = await node.broker.history(ch, since, limit)
    if not info.epoch:
        raise PulseboardError(NOT_FOUND, f"no channel {ch!r} yet")
    # Each envelope as the broker keeps it (`raw`, the same compact JSON): re-encoding 2,000
    # envelopes (and decoding them from the store first) was a good part of a long-range read.
    head: dict[str, Any] = {"ch": ch, "epoch": info.epoch, "seq": info.seq, "first": info.first}
    if ranged:
        head["downsampled"] = downsampled
    listed = ",".join(e.raw or dumps({"ch": e.ch, "seq": e.seq, "ts": e.ts, "data": e.data}) for e in msgs)
    return Response(f'{dumps(head)[:-1]},"msgs":[{listed}]}}', media_type="application/json")


async def channels(request: Request) -> Response:
    grants = await authenticate(request, allow_ticket=True)
    infos = await node_of(request).broker.channels()
    return JSONResponse(
        {"channels": [
            {"ch": i.ch, "epoch": i.epoch, "seq": i.seq} for i in infos if grants.can_read(i.ch)
        ]}
    )


async def requested_channels(request: Request, grants: Grants, patterns: bool = False) -> list[str] | None:
    """The optional body {"ch": [...]}: channels the caller may read, checked. With `patterns`,
    an entry may also be a prefix pattern (`train.*`) that the caller's read grants cover."""
    if request.headers.get("content-length", "0") in ("", "0"):
        return None
    body = await read_json(request)
    raw = body.get("ch") if isinstance(body, dict) else None
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise bad_request("'ch' is a list of channels")
    if not patterns:
        chs = [check_channel(c) for c in raw]
        for c in chs:
            grants.check_read(c)
        return chs
    chs = [check_pattern(c) for c in raw]
    for c in chs:
        if not grants.covers(c):
            raise PulseboardError(FORBIDDEN, f"token may not read every channel of {c!r}")
    return chs


async def ticket(request: Request) -> Response:
    grants = await authenticate(request)
    node = node_of(request)
    chs = await requested_channels(request, grants)
    ttl = node.settings.ticket_ttl
    return JSONResponse({"ticket": node.verifier.mint_ticket(grants, chs, ttl), "ttl": ttl})


async def view_token(request: Request) -> Response:
    """A read-only token for some channels, expiring with the caller's: safe(r) to store in a notebook."""
    grants = await authenticate(request)
    node = node_of(request)
    chs = await requested_channels(request, grants, patterns=True)
    if not chs:
        raise bad_request('name the channels: {"ch": ["sys.myhost", "train.*", ...]}')
    return JSONResponse({"token": node.verifier.mint_view_token(grants, chs), "exp": int(grants.exp)})


async def healthz(request: Request) -> Response:
    node = node_of(request)
    status = node.broker.status()
    return JSONResponse(
        {
            "status": "ok" if status == "ok" else "degraded",
            "broker": status,
            "connections": len(node.clients),
            "node": node.id,
        },
        status_code=200,
    )


async def metrics(request: Request) -> Response:
    node = node_of(request)
    node.metrics.broker_up.set(1 if node.broker.status() == "ok" else 0)
    return Response(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)
