"""A TCP fault proxy for tests: cuts, stalls, slow reads and half-open (black-holed) connections.

It runs in the test's event loop and forwards every accepted connection to one upstream
port. Each accepted connection becomes a `Link`; the test picks links and breaks them:

- `cut(link, rst=False)`: close both sides (FIN), or reset them (`rst=True`, SO_LINGER 0),
  possibly in the middle of a frame or an event;
- `stall(link)` / `resume(link)`: stop forwarding (bytes wait in the proxy and the kernel
  buffers), then go on; nothing is lost at the TCP level;
- `slow(link, chunk, delay)`: forward at most `chunk` bytes per `delay` seconds towards the
  client (a slow reader);
- `blackhole(link)`: forward nothing more and never close either side: the peers see a
  half-open connection (no FIN, no RST, no data) until their own heartbeats find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Link:
    """One proxied connection: client side `down`, server side `up`."""

    id: int
    down: asyncio.StreamWriter
    up: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    chunk: int = 65536  # bytes forwarded per read towards the client
    delay: float = 0.0  # pause after each chunk towards the client (slow reader)
    blackholed: bool = False
    closed: bool = False
    bytes_down: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.links: list[Link] = []  # open links, oldest first
        self.accepted = 0
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.on_accept: Callable[[Link], None] | None = None  # e.g. slow every new link from its start

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            self.cut(link)
        if self._server is not None:
            await self._server.wait_closed()

    def live(self) -> list[Link]:
        """Links still forwarding (not black-holed, not closed)."""
        return [lk for lk in self.links if not lk.closed and not lk.blackholed]

    async def wait_for(self, pred: Callable[[], object], timeout: float = 30.0) -> None:
        """Wait until `pred()` holds, re-checking whenever a link opens or closes."""

        async def loop() -> None:
            while not pred():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.accepted += 1
        link = Link(self.accepted, writer, up_writer)
        link.flowing.set()
        if self.on_accept is not None:
            self.on_accept(link)
        self.links.append(link)
        self._notify()
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, towards_client=False)),
            asyncio.create_task(self._pump(link, up_reader, writer, towards_client=True)),
        ]

    async def _pump(self, link: Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    towards_client: bool) -> None:
        try:
            while not link.closed:
                await link.flowing.wait()
                data = await src.read(link.chunk if towards_client else 65536)
                if not data:
                    break
                await link.flowing.wait()  # a stall holds bytes already read; it never drops them
                dst.write(data)
                await dst.drain()
                if towards_client:
                    link.bytes_down += len(data)
                    if link.delay:
                        await asyncio.sleep(link.delay)  # simulated slow reader, not a wait for an event
        except (OSError, asyncio.IncompleteReadError):
            pass
        if not link.blackholed:
            self._close(link, rst=False)

    def _notify(self) -> None:
        self.changed.set()

    def _close(self, link: Link, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        link.flowing.set()
        for w in (link.down, link.up):
            if rst:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(Exception):
                w.close()
        for t in link.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        if link in self.links:
            self.links.remove(link)
        self._notify()

    # --- faults --------------------------------------------------------------------------------

    def cut(self, link: Link, rst: bool = False) -> None:
        """Close both sides now (FIN, or RST with `rst`), whatever is in flight."""
        self._close(link, rst)

    def stall(self, link: Link) -> None:
        link.flowing.clear()

    def resume(self, link: Link) -> None:
        link.flowing.set()

    def slow(self, link: Link, chunk: int = 512, delay: float = 0.01) -> None:
        link.chunk, link.delay = chunk, delay

    def fast(self, link: Link) -> None:
        link.chunk, link.delay = 65536, 0.0

    def blackhole(self, link: Link) -> None:
        """Forward nothing more and close nothing: a half-open connection for both peers."""
        link.blackholed = True
        link.flowing.clear()
        for t in link.tasks:
            t.cancel()
        self._notify()

    def release(self, link: Link) -> None:
        """Finally close a black-holed link (test cleanup)."""
        link.blackholed = False
        self._close(link, rst=True)
