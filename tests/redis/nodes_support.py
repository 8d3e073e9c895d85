"""Helpers shared by the multi-node Redis tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx

from harness.servers import ServerProcess
from harness.tokens import token
from pulseboard.client import Client
from pulseboard.protocol import Envelope

Servers = Callable[..., ServerProcess]
_http = threading.local()


def publish(node: ServerProcess, ch: str, n: int, start: int = 0) -> list[int]:
    """POST `n` messages {i: start..} through `node` (one kept-alive HTTP client per thread)."""
    client = getattr(_http, "client", None)
    if client is None:
        client = _http.client = httpx.Client(headers={"Authorization": f"Bearer {token()}"}, timeout=30)
    body = [{"ch": ch, "data": {"i": i}} for i in range(start, start + n)]
    r = client.post(node.url + "/publish", json=body)
    r.raise_for_status()
    seqs: list[int] = r.json()["seqs"]
    return seqs


class Recording(Client):
    """The reference client, also recording every envelope before its dedupe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, list[int]] = {}
        self.data: dict[str, list[Any]] = {}
        self._consumer: asyncio.Task[None] | None = None

    def accept(self, env: Envelope) -> bool:
        self.seen.setdefault(env.ch, []).append(env.seq)
        self.data.setdefault(env.ch, []).append(env.data)
        return super().accept(env)

    def run(self) -> None:
        async def consume() -> None:
            async for _ in self:
                pass

        self._consumer = asyncio.create_task(consume())

    def subscribed(self, ch: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("op") == "subscribed" and e.get("ch") == ch]

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        await self.close()


async def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def health(server: ServerProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(server.url + "/healthz", timeout=5).json()
    return body



def redis_nodes(servers: Servers, url: str, n: int, *extra: str) -> list[ServerProcess]:
    procs = [servers("--broker", url, "--node", f"n{i}", *extra, start=False) for i in range(n)]
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_ready()
    return procs
