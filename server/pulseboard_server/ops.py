"""Decoding the ops a client sends (subscribe, unsubscribe, publish, refresh, ping): server-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pulseboard.protocol import Start, bad_request, check_channel, check_data, check_ts, parse_start


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: dict[str, Start]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    ch: str
    data: dict[str, Any]
    id: Any = None
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientOp = Subscribe | Unsubscribe | Publish | Refresh | Ping


def decode_client_frame(text: str) -> ClientOp:
    """Decode one client text frame; raise `bad_request` saying what was wrong."""
    try:
        # NaN/Infinity become null: in `data` as `check_data` would make them, and an
        # op's `id` is echoed back in `ack`/`error`, which can't carry them.
        obj = json.loads(text, parse_constant=lambda _: None)
    except ValueError:
        raise bad_request("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise bad_request("a client frame is a JSON object with an 'op'")
    op = obj.get("op")
    if op == "subscribe":
        chs = obj.get("ch")
        if isinstance(chs, list):
            chs = {c: None for c in chs if isinstance(c, str)} if all(
                isinstance(c, str) for c in chs
            ) else None
        if not isinstance(chs, dict) or not chs:
            raise bad_request("'subscribe' needs 'ch': an object of channel -> starting point")
        return Subscribe({check_channel(c): parse_start(s) for c, s in chs.items()})
    if op == "unsubscribe":
        chs = obj.get("ch")
        if isinstance(chs, str):
            chs = [chs]
        if not isinstance(chs, list) or not chs:
            raise bad_request("'unsubscribe' needs 'ch': a list of channels")
        return Unsubscribe(tuple(check_channel(c) for c in chs))
    if op == "publish":
        ts = obj.get("ts")
        return Publish(
            check_channel(obj.get("ch")),
            check_data(obj.get("data")),
            obj.get("id"),
            None if ts is None else check_ts(ts, 0.0),
        )
    if op == "refresh":
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise bad_request("'refresh' needs 'token': a JWT string")
        return Refresh(token)
    if op == "ping":
        return Ping()
    raise bad_request(f"unknown op {str(op)[:40]!r}: use subscribe, unsubscribe, publish, refresh or ping")
