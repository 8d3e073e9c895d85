"""Server memory per idle subscribed WebSocket connection.

Starts `pulseboard serve` (memory broker), opens N connections from `--procs`
client processes (picows), each subscribed to one of C channels, and prints the
server's RSS growth per connection once all are subscribed.

    .venv/bin/python bench/connections.py                  # 10,000 connections
    .venv/bin/python bench/connections.py --clients 20 --procs 1   # smoke size
    .venv/bin/python bench/connections.py --client browser        # browser-like clients only

Clients are browser-like (they offer permessage-deflate exactly as Chromium does) and,
as the baseline in the same run, plain (no offer): one server each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import resource
from typing import Any

import psutil

from harness.servers import ServerProcess
from harness.tokens import token

CHROMIUM_DEFLATE = "permessage-deflate; client_max_window_bits"  # Chromium's offer, byte for byte


async def hold(urls: list[tuple[str, str]], ready: Any, stop: Any, client: str) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    headers = {"Sec-WebSocket-Extensions": CHROMIUM_DEFLATE} if client == "browser" else None

    subscribed = [0]

    class Idle(WSListener):  # type: ignore[misc]
        def __init__(self, ch: str) -> None:
            self.ch = ch

        def on_ws_connected(self, transport: WSTransport) -> None:
            transport.send(WSMsgType.TEXT, b'{"op":"subscribe","ch":{"%s":null}}' % self.ch.encode())

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if b'"op":"subscribed"' in frame.get_payload_as_bytes():
                subscribed[0] += 1

    transports = []
    for ch, url in urls:
        transport, _ = await ws_connect(lambda ch=ch: Idle(ch), url, websocket_handshake_timeout=60,
                                        extra_headers=headers)
        transports.append(transport)
    while subscribed[0] < len(urls):
        await asyncio.sleep(0.05)
    ready.put(len(urls))
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for t in transports:
        t.disconnect()


def client_main(urls: list[tuple[str, str]], ready: Any, stop: Any, client: str) -> None:
    asyncio.run(hold(urls, ready, stop, client))


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children (server, clients) inherit it
    return hard


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--client", default="browser,plain",
                    help="comma-separated client kinds, one server each: browser (offers deflate as Chromium "
                         "does), plain (offers nothing)")
    a = ap.parse_args()
    limit = raise_fd_limit()
    if a.clients + 100 > limit:
        raise SystemExit(f"open-file limit {limit} is below {a.clients} connections: raise `ulimit -n`")
    print(f"{a.clients:,} idle subscribed WebSocket connections on {a.channels} channels "
          f"({os.cpu_count()} cores, load average before {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print("\n| clients | server RSS before | after | per connection |\n|---|---|---|---|")
    for client in a.client.split(","):
        rss0, rss1 = measure(a.clients, a.channels, a.procs, client)
        print(f"| {client} | {rss0 / 2**20:.1f} MiB | {rss1 / 2**20:.1f} MiB | "
              f"{(rss1 - rss0) / a.clients / 1024:.1f} KiB |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def measure(clients: int, channels: int, procs: int, client: str) -> tuple[int, int]:
    """Server RSS before and after `clients` idle subscribed connections of this kind."""
    srv = ServerProcess("--log-level", "warning", "--max-subscriptions", "10",
                        "--max-connections-per-sub", "1000000").start()  # one subject for every client
    assert srv.proc is not None
    server = psutil.Process(srv.proc.pid)
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    tok = token(read=("*",), publish=())
    urls = [(f"idle{i % channels}", f"{srv.ws_url}?token={tok}") for i in range(clients)]
    workers = [ctx.Process(target=client_main, args=(urls[k::procs], ready, stop, client)) for k in range(procs)]
    try:
        gc.collect()
        rss0 = server.memory_info().rss
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=600)
        rss1 = server.memory_info().rss
    finally:
        stop.set()
        for w in workers:
            w.join(60)
            if w.is_alive():
                w.kill()
        srv.stop()
    return rss0, rss1


if __name__ == "__main__":
    main()
