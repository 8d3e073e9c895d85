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
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from pulseboard.client import Client
from pulseboard.protocol import Envelope, PulseboardError, decode_cursor

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
        self.last: tuple[float, str, str] = (time.monotonic(), "started", "")  # when, which event, its start

    def seen(self, event: str, text: str) -> None:
        """Something arrived (diagnostics: how long a reader has been quiet, and on what)."""
        self.last = (time.monotonic(), event, text[:80])

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

    def describe(self, want: Mapping[str, int]) -> str:
        """This reader's state for a failure message: per channel the seqs missing from 1..`want[ch]`
        and those seen twice, its connections, last failures and how long it has been quiet."""
        lines = [f"{self.transport} reader: {self.count()} messages, {self.connects} connects, "
                 f"failures {self.failures[-3:]}, quiet {time.monotonic() - self.last[0]:.1f} s "
                 f"since {self.last[1]} {self.last[2]!r}"]
        for ch in self.channels:
            got = self.raw[ch]
            missing = sorted(set(range(1, want.get(ch, 0) + 1)) - set(got))
            twice = sorted({s for s in got if got.count(s) > 1})
            lines.append(f"  {ch}: {len(got)} of {want.get(ch, 0)}, last {got[-1:]}, missing {spans(missing)}, "
                         f"twice {spans(twice)}")
        if self.resets():
            lines.append(f"  resets {self.resets()[-3:]}")
        return "\n".join(lines)


def spans(seqs: list[int]) -> str:
    """Sorted seqs as ranges ("3-7,9"), for failure messages."""
    out: list[str] = []
    for s in seqs:
        if out and int(out[-1].rpartition("-")[2]) == s - 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{s}"
        else:
            out.append(str(s))
    return ",".join(out) or "none"


class WsReader(Reader):
    """pulseboard.client.Client (the reference client) through the proxy."""

    transport = "ws"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        reader = self

        class Recording(Client):
            def accept(self, env: Envelope) -> bool:
                reader.raw[env.ch].append(env.seq)
                reader.seen("message", f"{env.ch} {env.seq}")
                super().accept(env)
                return False  # recorded here; nothing queued for an iterator

            def handle_control(self, op: dict[str, Any]) -> None:
                reader.seen(str(op.get("op")), json.dumps(op))
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
                            if ev.data or ev.event != "message":  # a heartbeat is not news
                                self.seen(ev.event, ev.data)
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

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.cursor: str | None = None
        self.asked: float | None = None  # when the request in flight was sent
        self.answers: deque[tuple[float, str]] = deque(maxlen=4)  # the last answers: when, summary (diagnostics)

    async def run(self) -> None:
        query = "&".join(f"ch={c}" for c in self.channels)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10), headers=auth(self.tok)) as http:
            while True:
                url = f"{self.url}/poll?{query}" + (f"&cursor={self.cursor}" if self.cursor else "")
                self.asked = time.monotonic()
                try:
                    r = await http.get(url)
                    self.note(r)
                    r.raise_for_status()
                    answer = r.json()
                except (httpx.HTTPError, OSError, ValueError) as e:
                    self.failures.append(e.__class__.__name__)
                    await self.backoff()
                    continue
                finally:
                    self.asked = None
                self.connects += 1
                self.ops += [op for op in answer.get("ops", []) if op.get("op") in ("subscribed", "reset", "error")]
                for env in answer["msgs"]:
                    self.raw[env["ch"]].append(env["seq"])
                self.cursor = answer["cursor"]
                self.seen("answer", self.answers[-1][1])

    def note(self, r: httpx.Response) -> None:
        """Summarise an answer: when, its status and node, each channel's seqs, its ops and cursor."""
        what = f"{r.status_code} from {r.headers.get('x-upstream', '?')}"
        try:
            answer = r.json()
            got: dict[str, list[int]] = {}
            for env in answer["msgs"]:
                got.setdefault(env["ch"], []).append(env["seq"])
            what += " " + " ".join(f"{ch} {spans(sorted(v))}" for ch, v in got.items())
            what += f" ops {[(op.get('op'), op.get('ch'), op.get('seq')) for op in answer['ops']]}"
            what += f" cursor {cursor_text(answer['cursor'])}"
        except (ValueError, KeyError, TypeError):
            what += f" {r.text[:80]!r}"
        self.answers.append((time.monotonic(), what))

    def describe(self, want: Mapping[str, int]) -> str:
        flight = "none" if self.asked is None else f"for {time.monotonic() - self.asked:.1f} s"
        return "\n".join([super().describe(want), f"  cursor {cursor_text(self.cursor)}, request in flight {flight}",
                          *(f"  answer {time.monotonic() - t:.1f} s ago: {a}" for t, a in self.answers)])


def cursor_text(cursor: str | None) -> str:
    """A poll cursor's positions, readable."""
    if cursor is None:
        return "none"
    try:
        return " ".join(f"{ch}@{seq}" for ch, (_epoch, seq) in decode_cursor(cursor).items())
    except PulseboardError:
        return repr(cursor)


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
