"""Per-subject limits and bounded input: connections per `sub`, publish rate, JSON depth.

Every table here is bounded: connection slots by the open connections themselves,
rate buckets by `MAX_BUCKETS` (full buckets are dropped first; a full bucket is the
same as none). The limits are per node; docs/security.md lists them with defaults.
"""

from __future__ import annotations

import json
import math
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

from pulseboard.protocol import BAD_REQUEST, RATE_LIMITED, PulseboardError

from .config import Settings

MAX_JSON_DEPTH = 64  # nesting of arrays/objects in any JSON a client sends
MAX_BUCKETS = 10_000  # rate buckets kept (per table) before full ones are dropped
# `POST token` (Hub mode) per client address: a kernel exchanges about once an hour, but a
# class starting its notebooks at once may come from one address (a local spawner, a NAT).
EXCHANGE_RATE = 5.0
EXCHANGE_BURST = 50


class LimitError(PulseboardError):
    """A refusal with its own HTTP status or headers (429 + Retry-After, 408)."""

    def __init__(
        self, code: str, detail: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(code, detail)
        self.status = status
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def rate_limited(detail: str, retry_after: float | None = None) -> LimitError:
    return LimitError(RATE_LIMITED, detail, retry_after=retry_after)


# --- JSON from clients ------------------------------------------------------------


# A JSON string (escapes included); every byte but the brackets; and but those, quotes and backslashes.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of `[`/`{` in `text`, ignoring brackets inside strings.

    Only scans when there are more brackets than the bound could be exceeded with, and then
    in C as far as it can: a byte-by-byte walk in Python took most of the server's time on a
    512 KiB batch of 5,000 messages. Usual bodies (no backslash, no bracket inside a string)
    shrink to their quotes and brackets, and once every `""` pair is gone to brackets alone;
    others drop their strings by regex first. A string left open to the end counts as
    closed: its brackets count (the body is bad JSON and gets a 400 either way).
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    shape = raw.translate(None, _NOT_STRUCTURE)
    if b"\\" not in shape:
        shape = shape.replace(b'""', b"")  # strings without brackets, in order: pairs go
    if b'"' in shape:
        shape = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in shape:
        if byte == 0x5B or byte == 0x7B:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


# client JSON (an HTTP body, a WebSocket frame) parsed on the event loop; a bigger one on a worker thread
PARSE_ON_LOOP = 64 * 1024


def check_json_depth(text: str | bytes) -> None:
    """Raise 400 when `text` nests deeper than `MAX_JSON_DEPTH` (before anything parses it)."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise PulseboardError(BAD_REQUEST, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def loads(text: str | bytes, what: str = "body") -> Any:
    """Parse client JSON with the depth bound; every failure is a 400 saying what was wrong.

    `NaN`/`Infinity` parse (a NaN loss is normal); `check_data` turns them into null.
    """
    check_json_depth(text)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise PulseboardError(BAD_REQUEST, f"{what} is not valid JSON") from None


# --- per-subject limits -------------------------------------------------------------


class Limits:
    """One node's per-subject limits: open connections and publish rate.

    `admit(sub, conn)` before a streaming connection starts (ws, sse, poll), `leave(conn)`
    when it ends; a connection that is garbage-collected without `leave` frees its slot too.
    `take_publish(sub, n)` before publishing `n` messages; `take_exchange(address)` before a
    Hub token exchange.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._conns: dict[str, weakref.WeakSet[Any]] = {}
        self._owner: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._buckets = Buckets(clock)  # publish rate, by subject
        self._exchanges = Buckets(clock)  # Hub token exchanges, by client address

    def connections(self, sub: str) -> int:
        conns = self._conns.get(sub)
        return len(conns) if conns is not None else 0

    def admit(self, sub: str, conn: object) -> None:
        """Count `conn` against `sub`; raise 429 when `sub` already holds the limit."""
        limit = self.settings.max_connections_per_sub
        conns = self._conns.setdefault(sub, weakref.WeakSet())
        if conn in conns:
            return
        if limit and len(conns) >= limit:
            raise rate_limited(
                f"{sub!r} already has {limit} open connections: close some "
                "(see --max-connections-per-sub)", retry_after=5,
            )
        conns.add(conn)
        self._owner[conn] = sub

    def leave(self, conn: object) -> None:
        sub = self._owner.pop(conn, None)
        if sub is None:
            return
        conns = self._conns.get(sub)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._conns[sub]

    def take_publish(self, sub: str, n: int = 1) -> None:
        """Spend `n` from `sub`'s publish bucket, or raise 429 with the seconds to wait."""
        rate, burst = self.settings.publish_rate, self.settings.publish_burst
        if rate <= 0:
            return
        wait = self._buckets.take(sub, n, rate, burst)
        if wait:
            raise rate_limited(
                f"publishing over {rate:g} messages/s (burst {burst}) for {sub!r}: "
                f"retry in {wait:.1f} s", retry_after=wait,
            )

    def take_exchange(self, address: str) -> None:
        """Spend one Hub token exchange (`POST token`) of a client address, or raise 429."""
        wait = self._exchanges.take(address, 1, EXCHANGE_RATE, EXCHANGE_BURST)
        if wait:
            raise rate_limited(
                f"too many token exchanges from {address} (over {EXCHANGE_RATE:g}/s, burst {EXCHANGE_BURST}): "
                f"retry in {wait:.1f} s", retry_after=wait,
            )


class Buckets:
    """Token buckets by key (a subject, a client address); at most `MAX_BUCKETS` are kept:
    full ones are dropped first (a full bucket is the same as none), then the oldest."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._b: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def __len__(self) -> int:
        return len(self._b)

    def take(self, key: str, n: int, rate: float, burst: int) -> float:
        """Spend `n` from `key`'s bucket and return 0.0, or return the seconds to wait
        (nothing spent). A batch over the burst may run the bucket into debt."""
        now = self._clock()
        tokens, when = self._b.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - when) * rate)
        need = min(n, burst)
        wait = (need - tokens) / rate if need > tokens else 0.0
        self._b[key] = (tokens if wait else tokens - n, now)
        if len(self._b) > MAX_BUCKETS:
            self._prune(now, rate, burst)
        return wait

    def _prune(self, now: float, rate: float, burst: int) -> None:
        full = [k for k, (t, w) in self._b.items() if t + (now - w) * rate >= burst]
        for k in full:
            del self._b[k]
        while len(self._b) > MAX_BUCKETS:  # all busy: the oldest go first
            del self._b[next(iter(self._b))]
