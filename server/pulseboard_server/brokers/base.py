"""The broker interface every backend implements, and the URL-scheme picker."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from pulseboard.protocol import UNAVAILABLE, Envelope, PulseboardError, Start

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


BACKENDS = {
    "sqlite": "pulseboard_server.brokers.sqlite:SqliteBroker",
    "memory": "pulseboard_server.brokers.memory:MemoryBroker",
    "redis": "pulseboard_server.brokers.redis:RedisBroker",
    "rediss": "pulseboard_server.brokers.redis:RedisBroker",
    "redis+cluster": "pulseboard_server.brokers.redis:RedisBroker",
}


STORE_OPTIONS = ("data_dir", "retention", "max_store_bytes")
SHARED_OPTIONS = ("retention",)  # store options every broker takes, with the same meaning everywhere
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
