"""Small helpers for talking to a real server over WebSocket and HTTP in tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from harness.servers import ServerProcess
from harness.tokens import token


async def open_ws(server: ServerProcess, tok: str | None = None, **kwargs: Any) -> ClientConnection:
    tok = tok if tok is not None else token()
    headers = kwargs.pop("additional_headers", {}) or {}
    headers.setdefault("Authorization", f"Bearer {tok}")
    return await connect(server.ws_url, additional_headers=headers, subprotocols=["pulseboard.v1"],  # type: ignore[list-item]
                         max_size=None, open_timeout=10, **kwargs)


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_op(ws: ClientConnection, op: str, timeout: float = 10.0) -> dict[str, Any]:
    """Read frames until a control op named `op` arrives; return it."""
    while True:
        msg = await recv_json(ws, timeout)
        if isinstance(msg, dict) and msg.get("op") == op:
            return msg


async def recv_envelopes(ws: ClientConnection, n: int, timeout: float = 10.0,
                         ops: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Read frames until `n` envelopes have arrived; control ops go to `ops`."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await recv_json(ws, timeout)
        if isinstance(msg, list):
            out.extend(msg)
        elif ops is not None:
            ops.append(msg)
    return out


async def subscribe(ws: ClientConnection, ch: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a subscribe op; return the `subscribed` ops (one per channel)."""
    await ws.send(json.dumps({"op": "subscribe", "ch": ch}))
    got = []
    for _ in ch:
        got.append(await recv_op(ws, "subscribed"))
    return got


def publish(server: ServerProcess, ch: str, n: int, start: int = 0, tok: str | None = None,
            field: str = "i") -> list[int]:
    """Publish `n` messages {field: start..start+n-1} in one POST; return their seqs."""
    body = [{"ch": ch, "data": {field: i}} for i in range(start, start + n)]
    r = httpx.post(server.url + "/publish", json=body,
                   headers={"Authorization": f"Bearer {tok or token()}"}, timeout=30)
    r.raise_for_status()
    seqs: list[int] = r.json()["seqs"]
    return seqs
