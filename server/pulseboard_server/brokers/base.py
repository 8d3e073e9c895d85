"""The broker interface every backend implements, and the URL-scheme picker."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from pulseboard.protocol import TOO_LARGE, UNAVAILABLE, Envelope, PulseboardError, Start

OnMessage = Callable[[Envelope], None]
OnReset = Callable[[str, str, int], None]  # channel, new epoch, top seq
PublishItem = tuple[str, dict[str, Any], float, str | None]  # ch, data, ts, idempotency key


class BrokerUnavailable(PulseboardError):
    """The broker can't be reached right now; publishes get 503, clients stay."""

    def __init__(self, detail: str = "broker unavailable: try again shortly") -> None:
        super().__init__(UNAVAILABLE, detail)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    ch: str
    epoch: str
    seq: int  # top seq, 0 when nothing was published yet
    first: int  # oldest seq still in history (seq + 1 when history is empty)


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to a (re)subscription: where the channel is and what to send."""

    info: ChannelInfo
    recovered: bool
    msgs: list[Envelope]


class Broker(Protocol):
    """Numbers, keeps and fans out messages.

    `start` gets the callbacks the broker calls with every message of a
    subscribed channel (in seq order, no gaps, once each) and with a reset when
    a channel's numbering restarted.
    """

    url: str

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None: ...

    async def close(self) -> None: ...

    def status(self) -> str:
        """'ok' or 'degraded'."""
        ...

    async def publish(self, ch: str, data: dict[str, Any], ts: float, key: str | None = None) -> Envelope:
        """Number, keep and fan out one message.

        `key` is the contract's idempotency key: when the channel already numbered a
        message with that key (while it is in history), return that message's
        envelope (same seq) and do not number or fan it out again.
        """
        ...

    async def subscribe(self, ch: str) -> None: ...

    async def unsubscribe(self, ch: str) -> None: ...

    async def replay(self, ch: str, start: Start) -> Replay: ...

    async def history(self, ch: str, since: int | None, limit: int) -> tuple[ChannelInfo, list[Envelope]]: ...

    async def history_range(
        self, ch: str, t0: float | None, t1: float | None, points: int
    ) -> tuple[ChannelInfo, list[Envelope], bool]:
        """At most `points` envelopes of `ch` with t0 <= ts <= t1 (see `downsample`), and
        whether any was left out. Like `history`, never creates the channel."""
        ...

    async def channels(self) -> list[ChannelInfo]: ...

    async def publish_many(self, items: list[PublishItem]) -> list[Envelope]:
        """Publish `items` in order, as `publish` would one by one, answering once all are kept
        (the embedded store numbers them together and waits for ONE commit). On an error,
        the items before the failing one may have been published (same as one by one)."""
        ...

    async def claim_once(self, key: str, ttl: float) -> bool:
        """True the first time `key` is claimed within `ttl` seconds (one-time tickets)."""
        ...

    async def delete(self, ch: str) -> bool:
        """Remove the channel's messages (False: it had none). Its subscribers get a reset
        to a new epoch at seq 0, and its next publish starts that epoch at seq 1."""
        ...

    async def run_put(self, project: str, name: str, record: dict[str, Any]) -> None:
        """Keep (or replace) one run record; `too_large` past MAX_RUNS_PER_PROJECT / MAX_RUNS."""
        ...

    async def run_get(self, project: str, name: str) -> dict[str, Any] | None: ...

    async def run_list(self, project: str) -> list[dict[str, Any]]: ...

    async def run_entries(self, project: str) -> list[RunEntry]:
        """`run_list` with each record's `encode_run` (kept with it where it is kept in memory)."""
        ...

    async def run_delete(self, project: str, name: str) -> bool: ...


BACKENDS = {
    "sqlite": "pulseboard_server.brokers.sqlite:SqliteBroker",
    "memory": "pulseboard_server.brokers.memory:MemoryBroker",
    "redis": "pulseboard_server.brokers.redis:RedisBroker",
    "rediss": "pulseboard_server.brokers.redis:RedisBroker",
    "redis+cluster": "pulseboard_server.brokers.redis:RedisBroker",
}


STORE_OPTIONS = ("data_dir", "retention", "max_store_bytes", "max_channel_bytes", "max_history_bytes")
SHARED_OPTIONS = ("retention", "max_channel_bytes", "max_history_bytes")  # every broker takes these, same meaning
# (the store takes and ignores the history byte caps: its own cap is --max-store-bytes, on disk)
DEFAULT_HISTORY = 1000  # messages kept per channel on memory:// and redis:// when --history is not given


def history_cap(history: int | None) -> int:
    """The bound of one backfill or `history?limit` read: --history, else DEFAULT_HISTORY."""
    return history if history is not None else DEFAULT_HISTORY


def sweep_period(retention: float) -> float:
    """Seconds between background retention sweeps: a quarter of the retention, 0.5-60 s."""
    return min(60.0, max(0.5, retention / 4))


class LocalClaims:
    """One-time keys held in this process (`Broker.claim_once` for single-node brokers), bounded:
    past 10,000 keys the expired ones are dropped."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def claim(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        if len(self._until) > 10_000:
            self._until = {k: t for k, t in self._until.items() if t > now}
        if self._until.get(key, 0.0) > now:
            return False
        self._until[key] = now + ttl
        return True


async def publish_each(broker: Any, items: list[PublishItem]) -> list[Envelope]:
    """`publish_many` as a loop of `publish` (brokers whose publishes don't batch)."""
    out = []
    for ch, data, ts, key in items:
        out.append(await (broker.publish(ch, data, ts) if key is None else broker.publish(ch, data, ts, key)))
    return out


def store_options(settings: Any) -> dict[str, Any]:
    """The embedded store's options from `Settings` (ignored by other brokers)."""
    return {k: getattr(settings, k) for k in STORE_OPTIONS if hasattr(settings, k)}


def open_broker(url: str, history: int | None, **options: Any) -> Broker:
    """Make (not start) the broker for `url`; the backend module is imported lazily.

    `history` None is each broker's default: DEFAULT_HISTORY messages per channel on
    memory:// and redis://, no count limit on sqlite:// (age and bytes only)."""
    scheme = urlsplit(url).scheme
    target = BACKENDS.get(scheme)
    if target is None:
        raise ValueError(f"unknown broker {url!r}: use sqlite://, memory:// or redis://host:port/db")
    if scheme != "sqlite":  # the store's options (data_dir, max_store_bytes) are its own
        options = {k: v for k, v in options.items() if k not in STORE_OPTIONS or k in SHARED_OPTIONS}
        history = history_cap(history)
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    broker: Broker = cls(url, history=history, **options)
    return broker


MAX_TOMBSTONES = 100_000  # deleted channels whose next epoch is remembered (oldest forgotten first)
MAX_RUNS_PER_PROJECT = 20_000  # run records one project holds (see runs.py)
MAX_RUNS = 200_000  # run records one server holds, all projects


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]


class Tombstones:
    """The epoch a deleted channel gets when it is published again: a new one, so a client
    resuming from the old (epoch, seq) is told `recovered: false`, never a silent gap."""

    def __init__(self) -> None:
        self._epochs: dict[str, str] = {}

    def bury(self, ch: str, epoch: str) -> None:
        self._epochs.pop(ch, None)
        self._epochs[ch] = epoch
        while len(self._epochs) > MAX_TOMBSTONES:
            del self._epochs[next(iter(self._epochs))]

    def get(self, ch: str) -> str | None:
        return self._epochs.get(ch)

    def pop(self, ch: str) -> str | None:
        return self._epochs.pop(ch, None)


def encode_run(record: dict[str, Any]) -> str:
    """A run record's JSON without its status, open at the end: `GET runs` appends the status as
    it is at that moment (`"stalled"}`), so 10,000 records answer without encoding any again."""
    body = json.dumps({k: v for k, v in record.items() if k != "status"}, separators=(",", ":"))
    return body[:-1] + (',"status":' if len(body) > 2 else '"status":')


RunEntry = tuple[dict[str, Any], str]  # a record and `encode_run` of it


class LocalRuns:
    """Run records held in this process, by project then name, in the order they first came
    (memory:// keeps them here; the store keeps them here too, as the cache of its `runs` table)."""

    def __init__(self) -> None:
        self.by_project: dict[str, dict[str, RunEntry]] = {}
        self.total = 0

    def get(self, project: str, name: str) -> dict[str, Any] | None:
        entry = self.by_project.get(project, {}).get(name)
        return entry[0] if entry is not None else None

    def check_room(self, project: str, name: str) -> None:
        """Raise `too_large` when adding this run would pass a bound."""
        runs = self.by_project.get(project)
        if runs is not None and name in runs:
            return
        if runs is not None and len(runs) >= MAX_RUNS_PER_PROJECT:
            raise PulseboardError(TOO_LARGE, f"project {project!r} holds {MAX_RUNS_PER_PROJECT} runs, the "
                                  "limit: delete old runs (pulseboard delete) first")
        if self.total >= MAX_RUNS:
            raise PulseboardError(TOO_LARGE, f"the server holds {MAX_RUNS} runs, the limit: delete old runs first")

    def put(self, project: str, name: str, record: dict[str, Any], encoded: str | None = None) -> None:
        runs = self.by_project.setdefault(project, {})
        if name not in runs:
            self.total += 1
        runs[name] = (record, encoded if encoded is not None else encode_run(record))

    def delete(self, project: str, name: str) -> bool:
        runs = self.by_project.get(project)
        if runs is None or runs.pop(name, None) is None:
            return False
        self.total -= 1
        if not runs:
            del self.by_project[project]
        return True

    def records(self, project: str) -> list[dict[str, Any]]:
        return [rec for rec, _ in self.by_project.get(project, {}).values()]

    def entries(self, project: str) -> list[RunEntry]:
        return list(self.by_project.get(project, {}).values())


class HeldRuns:
    """The reads of run records for brokers that hold them in this process (`_runs`)."""

    _runs: LocalRuns

    async def run_get(self, project: str, name: str) -> dict[str, Any] | None:
        return self._runs.get(project, name)

    async def run_list(self, project: str) -> list[dict[str, Any]]:
        return self._runs.records(project)

    async def run_entries(self, project: str) -> list[RunEntry]:
        return self._runs.entries(project)

