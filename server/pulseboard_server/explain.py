"""A server that could not start, saying why on its port instead of exiting.

For the on-demand server that JupyterLab starts through jupyter-server-proxy (which sets
`PULSEBOARD_EXPLAIN_FAILURE=1`): a process that exits non-zero there is started again at
once, hundreds of times a minute, while the kernel waits half a minute and then blames the
proxy. Staying up and answering every request with `503 {"error": "unavailable", "detail":
<the startup error>}` ends the loop and puts the real cause in front of the person, through
the kernel's discovery, within a second or two. It runs until it is stopped (SIGTERM, as
when JupyterLab shuts down); fix the cause, then restart JupyterLab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket

ENV = "PULSEBOARD_EXPLAIN_FAILURE"
HEAD_LIMIT = 16 * 1024  # bytes of request head read before answering
HEAD_TIMEOUT = 5.0


def wanted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def answer(detail: str) -> bytes:
    body = json.dumps({"error": "unavailable", "detail": f"pulseboard could not start: {detail}"}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode() + body


async def explain(sock: socket.socket, detail: str) -> None:
    """Answer every request on `sock` with the startup error until SIGTERM/SIGINT."""
    reply = answer(detail)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError,
                                 asyncio.IncompleteReadError):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            writer.write(reply)
            await writer.drain()
        writer.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(handle, sock=sock, limit=HEAD_LIMIT)
    async with server:
        await stop.wait()
