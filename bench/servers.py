"""The baselines `bench/fanout.py` measures pulseboard against, each run as its own process.

    python bench/servers.py bare PORT            # websockets.broadcast(), no auth, no numbering
    python bench/servers.py socketio PORT REDIS  # python-socketio + AsyncRedisManager under uvicorn

Both take the same workload: subscribers connect to a channel, one publisher sends
single messages `{"ch": C, ...}`, each goes to every subscriber of C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any


async def bare(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    channels: dict[str, set[ServerConnection]] = {}

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path.startswith("/sub/"):  # a subscriber: /sub/<channel>
            subs = channels.setdefault(path[5:], set())
            subs.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subs.discard(ws)
            return
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:  # the publisher: each message names its channel
                text = msg if isinstance(msg, str) else msg.decode()
                ch = json.loads(text)["ch"]
                broadcast(channels.get(ch, ()), text)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_queue=None):
        print("ready", flush=True)
        await asyncio.Future()


def socketio_app(redis_url: str) -> Any:
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", client_manager=socketio.AsyncRedisManager(redis_url),
                               cors_allowed_origins="*")

    @sio.event  # type: ignore[untyped-decorator,misc]
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        qs = environ.get("QUERY_STRING", "")
        ch = dict(p.split("=", 1) for p in qs.split("&") if "=" in p).get("ch", "")
        if ch:
            await sio.enter_room(sid, ch)

    @sio.event  # type: ignore[untyped-decorator,misc]
    async def pub(sid: str, data: dict[str, Any]) -> None:
        await sio.emit("msg", data, room=data["ch"])

    return socketio.ASGIApp(sio)


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "bare":
        asyncio.run(bare(port))
    elif kind == "socketio":
        import uvicorn

        print("ready", flush=True)
        uvicorn.run(socketio_app(argv[2]), host="127.0.0.1", port=port, ws="websockets-sansio",
                    log_level="warning", ws_ping_interval=None)
    else:
        raise SystemExit(f"unknown server {kind!r}: bare or socketio")


if __name__ == "__main__":
    main(sys.argv[1:])
