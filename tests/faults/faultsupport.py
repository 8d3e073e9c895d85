"""Shared pieces of the fault tests: the seed, the scale, and one resuming reader per transport.

Every reader records each envelope it is handed *before* any dedupe (`raw`), so a test can
assert that the server delivered every seq exactly once, not just that a client papered over
duplicates. Readers reconnect after any failure and resume from their own position: the
reference client's `since` (ws), `Last-Event-ID` (sse) or the cursor (poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from pulseboard.client import Client
from pulseboard.protocol import Envelope

LONG = os.environ.get("PULSEBOARD_LONG") == "1"


def seeded(name: str) -> random.Random:
    """A Random seeded from PULSEBOARD_TEST_SEED (to replay a failure) or a fresh seed, printed."""
    seed = int(os.environ.get("PULSEBOARD_TEST_SEED") or random.randrange(1 << 30))
    print(f"{name}: PULSEBOARD_TEST_SEED={seed}")
    return random.Random(seed)


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def until(pred: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> None:
    """Await an observable condition (re-checked every 10 ms), failing after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Reader:
    """A resuming subscriber on one transport; subclasses fill `raw` and `ops`."""

    transport = ""

    def __init__(self, url: str, channels: Iterable[str], tok: str, rng: random.Random) -> None:
        self.url = url
        self.channels = list(channels)
        self.tok = tok
        self.rng = random.Random(rng.randrange(1 << 30))
        self.raw: dict[str, list[int]] = {ch: [] for ch in self.channels}
        self.ops: list[dict[str, Any]] = []  # subscribed / reset / error ops seen
        self.connects = 0
        self.failures: list[str] = []  # why each connection ended
        self._task: asyncio.Task[None] | None = None
        self.last: tuple[float, str, str] = (0.0, "", "")  # when, which event, its start (diagnostics)

    def count(self) -> int:
        self.check()
        return sum(len(v) for v in self.raw.values())

    def subscribed(self) -> bool:
        names = {op.get("ch") for op in self.ops if op.get("op") == "subscribed"}
        return names >= set(self.channels)

    def resets(self) -> list[dict[str, Any]]:
        return [op for op in self.ops if op.get("op") in ("reset", "error")
                or (op.get("op") == "subscribed" and op.get("recovered") is False)]

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    def check(self) -> None:
        """Raise at once if the reader itself failed (a bug in the test or the client)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            raise AssertionError(f"{self.transport} reader failed: {exc!r}") from exc

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        raise NotImplementedError

    async def backoff(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.2))  # reconnect pacing, not a wait for an event


class WsReader(Reader):
    """pulseboard.client.Client (the reference client) through the proxy."""

    transport = "ws"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        reader = self

        class Recording(Client):
            def accept(self, env: Envelope) -> bool:
                reader.raw[env.ch].append(env.seq)
                super().accept(env)
                return False  # recorded here; nothing queued for an iterator

            def handle_control(self, op: dict[str, Any]) -> None:
                if op.get("op") in ("subscribed", "reset", "error"):
                    reader.ops.append(op)
                if op.get("op") == "welcome":
                    reader.connects += 1
                super().handle_control(op)

        self.client = Recording(self.channels, url=self.url, token=self.tok)

    async def run(self) -> None:
        self.client.start()
        assert self.client._task is not None
        await self.client._task

    async def stop(self) -> None:
        await self.client.close()
        await super().stop()


class SseReader(Reader):
    """httpx-sse (a standard client) resuming with Last-Event-ID."""

    transport = "sse"

    async def run(self) -> None:
        last_id: str | None = None
        query = "&".join(f"ch={c}" for c in self.channels)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10)) as http:
            while True:
                headers = auth(self.tok)
                if last_id:
                    headers["Last-Event-ID"] = last_id
                try:
                    async with aconnect_sse(http, "GET", f"{self.url}/sse?{query}", headers=headers) as source:
                        source.response.raise_for_status()
                        self.connects += 1
                        async for ev in source.aiter_sse():
                            self.last = (time.monotonic(), ev.event, ev.data[:80])
                            if ev.event == "message" and ev.data:  # httpx-sse yields a heartbeat as an empty one
                                for env in json.loads(ev.data):
                                    self.raw[env["ch"]].append(env["seq"])
                            elif ev.event in ("subscribed", "reset", "error"):
                                self.ops.append({"op": ev.event, **json.loads(ev.data)})
                            if ev.id:
                                last_id = ev.id
                    self.failures.append("stream ended")
                except (httpx.HTTPError, OSError) as e:
                    self.failures.append(e.__class__.__name__)
                await self.backoff()


class PollReader(Reader):
    """httpx long-polling, resuming from the last cursor it was given."""

    transport = "poll"

    async def run(self) -> None:
        cursor: str | None = None
        query = "&".join(f"ch={c}" for c in self.channels)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10), headers=auth(self.tok)) as http:
            while True:
                url = f"{self.url}/poll?{query}" + (f"&cursor={cursor}" if cursor else "")
                try:
                    r = await http.get(url)
                    r.raise_for_status()
                    answer = r.json()
                except (httpx.HTTPError, OSError, ValueError) as e:
                    self.failures.append(e.__class__.__name__)
                    await self.backoff()
                    continue
                self.connects += 1
                self.ops += [op for op in answer.get("ops", []) if op.get("op") in ("subscribed", "reset", "error")]
                for env in answer["msgs"]:
                    self.raw[env["ch"]].append(env["seq"])
                cursor = answer["cursor"]


READERS: dict[str, type[Reader]] = {"ws": WsReader, "sse": SseReader, "poll": PollReader}


def proc_stats(pid: int) -> tuple[int, int]:
    """(open files, RSS in KiB) of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return fds, int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


@contextlib.contextmanager
def timed(label: str) -> Any:
    t0 = time.monotonic()
    yield
    print(f"{label}: {time.monotonic() - t0:.1f} s")
