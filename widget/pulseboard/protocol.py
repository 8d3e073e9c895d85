"""The pulseboard wire protocol: pure, synchronous, no I/O.

Both the server and the kernel-side client use this module. It knows how to
encode and decode frames, check channel names and grants, keep a channel's
history window and decide what a (re)subscribing client must be sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

SUBPROTOCOL = "pulseboard.v1"
BEARER_PREFIX = "bearer."
CHANNEL_RE = re.compile(r"[A-Za-z0-9_.:/\-]{1,200}")

# Error codes shared by `error` ops and HTTP answers.
BAD_REQUEST = "bad_request"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
UNAUTHORIZED = "unauthorized"

# WebSocket close codes.
CLOSE_GOING_AWAY = 1001
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_PROTOCOL = 4400
CLOSE_TOO_SLOW = 4429

HTTP_STATUS = {
    BAD_REQUEST: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    TOO_LARGE: 413,
    RATE_LIMITED: 429,
    UNAVAILABLE: 503,
}


class PulseboardError(Exception):
    """The root of every pulseboard error: a code from the list above and a detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


def bad_request(detail: str) -> PulseboardError:
    return PulseboardError(BAD_REQUEST, detail)


# --- channel names and grants -------------------------------------------------


def check_pattern(name: object) -> str:
    """A channel name, or a channel-name prefix followed by one `*` (`train.*`); else `bad_request`."""
    if isinstance(name, str) and name.endswith("*") and (name == "*" or CHANNEL_RE.fullmatch(name[:-1])):
        return name
    return check_channel(name)


def check_channel(name: object) -> str:
    """Return `name` if it is a valid channel name, else raise `bad_request`."""
    if not isinstance(name, str) or CHANNEL_RE.fullmatch(name) is None:
        shown = repr(name)[:60]
        raise bad_request(
            f"invalid channel name {shown}: use 1-200 characters of A-Z a-z 0-9 _ . : / -"
        )
    return name


@dataclass(frozen=True, slots=True)
class Grants:
    """What a decoded token lets its holder do. Globs use `*`, `?` and `[...]`."""

    sub: str
    exp: float
    read: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()

    def can_read(self, ch: str) -> bool:
        return any(fnmatchcase(ch, g) for g in self.read)

    def can_publish(self, ch: str) -> bool:
        return any(fnmatchcase(ch, g) for g in self.publish)

    def check_read(self, ch: str) -> None:
        if not self.can_read(ch):
            raise PulseboardError(FORBIDDEN, f"token may not read {ch!r}")

    def check_publish(self, ch: str) -> None:
        if not self.can_publish(ch):
            raise PulseboardError(FORBIDDEN, f"token may not publish to {ch!r}")

    def covers(self, pattern: str) -> bool:
        """True when every channel `pattern` can match is readable.

        `pattern` is a channel name, or a name prefix followed by one trailing `*` (`train.*`).
        A prefix pattern is covered by a read grant `*` or a grant `<p>*` whose `<p>` (free of
        wildcards) starts the pattern's prefix; anything else is refused rather than guessed.
        """
        if not pattern.endswith("*"):
            return self.can_read(pattern)
        prefix = pattern[:-1]
        for g in self.read:
            if g == "*":
                return True
            gp = g[:-1]
            if g.endswith("*") and not any(c in gp for c in "*?[") and prefix.startswith(gp):
                return True
        return False


def grants_from_claims(claims: Mapping[str, Any]) -> Grants:
    """Turn verified JWT claims into `Grants`; raise `bad_request` on wrong shapes.

    The signature, `exp` and `nbf` must already have been checked by the caller.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise bad_request("token claim 'sub' must be a non-empty string")
    check_text(sub, "token claim 'sub'")  # it is logged and sent back (welcome)
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise bad_request("token claim 'exp' must be a number")
    return Grants(
        sub=sub,
        exp=float(exp),
        read=_globs(claims, "read"),
        publish=_globs(claims, "publish"),
    )


def _globs(claims: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = claims.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise bad_request(f"token claim {key!r} must be a list of channel globs")
    return tuple(value)


# --- envelopes ----------------------------------------------------------------


def dumps(obj: object) -> str:
    """Compact JSON, the only encoding on the wire."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One numbered message. `raw` is its JSON text, encoded once and reused."""

    ch: str
    seq: int
    ts: float
    data: dict[str, Any]
    raw: str = field(default="", compare=False, repr=False)

    @classmethod
    def make(cls, ch: str, seq: int, ts: float, data: dict[str, Any]) -> Envelope:
        raw = dumps({"ch": ch, "seq": seq, "ts": ts, "data": data})
        return cls(ch, seq, ts, data, raw)

    @classmethod
    def from_raw(cls, raw: str) -> Envelope:
        obj = json.loads(raw)
        return cls(obj["ch"], int(obj["seq"]), float(obj["ts"]), obj["data"], raw)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> Envelope:
        try:
            ch, seq, ts, data = obj["ch"], obj["seq"], obj["ts"], obj["data"]
        except (KeyError, TypeError):
            raise bad_request("envelope needs 'ch', 'seq', 'ts' and 'data'") from None
        if not isinstance(seq, int) or not isinstance(ts, (int, float)):
            raise bad_request("envelope 'seq' must be an int and 'ts' a number")
        return cls.make(check_channel(ch), seq, float(ts), check_data(data))


def check_data(data: object) -> dict[str, Any]:
    """Return `data` ready to encode; NaN and infinities become null (a gap in a chart).
    Text that UTF-8 can't carry (a lone surrogate) anywhere in it is refused."""
    if not isinstance(data, dict):
        raise bad_request("'data' must be a JSON object")
    return _finite(data, 0, "'data'")  # type: ignore[no-any-return]


def _finite(value: Any, depth: int, where: str) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return check_text(value, where)
    if depth > 32:
        raise bad_request("'data' is nested too deeply (over 32 levels)")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise bad_request("'data' keys must be strings")
        return {check_text(k, "a 'data' key"): _finite(v, depth + 1, field_name(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v, depth + 1, where) for v in value]
    if value is None or isinstance(value, (int, bool)):
        return value
    raise bad_request(f"'data' holds a value JSON can't carry ({type(value).__name__})")


# --- text every side can encode (one string must not stop the server) ---------------
# A JSON string may hold a lone surrogate (`"\\udc00"`), which no UTF-8 encoder takes:
# the store, Redis and every client would fail on it later. Refuse it at the door.

_UNENCODABLE = re.compile("[\ud800-\udfff]")
MAX_KEY = 200  # characters in an idempotency key


def field_name(name: str) -> str:
    """How a refusal names a field of `data`: quoted, escaped, short (never the value)."""
    return f"'data' field {ascii(name)[:60]}"


def check_text(text: str, where: str) -> str:
    """Return `text` if UTF-8 can encode it, else raise `bad_request` naming `where`
    (the message never holds the text itself)."""
    m = _UNENCODABLE.search(text)
    if m is not None:
        raise bad_request(f"{where} holds text that can't be encoded as UTF-8 (a lone surrogate, "
                          f"U+{ord(m.group()):04X}, at character {m.start()}): send valid Unicode")
    return text


def encodable(value: object) -> bool:
    """True when `value` (an op's `id`, echoed back in `ack`/`error`) encodes as UTF-8 JSON."""
    try:
        dumps(value).encode()
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def check_key(key: object) -> str | None:
    """An idempotency key: None, or 1 to `MAX_KEY` characters of encodable text; else `bad_request`."""
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
        raise bad_request(f"'key' must be a string of 1 to {MAX_KEY} characters")
    return check_text(key, "'key'")


MAX_TS = 1e11  # unix seconds; about the year 5000


def check_ts(ts: object, default: float) -> float:
    if ts is None:
        return default
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise bad_request("'ts' must be a finite number of unix seconds")
    if not 0 <= ts < MAX_TS:
        raise bad_request("'ts' must be unix seconds between 0 and 1e11 (did you pass milliseconds?)")
    return float(ts)


def batch_frame(raws: Iterable[str]) -> str:
    """A server data frame: a JSON array of already-encoded envelopes."""
    return "[" + ",".join(raws) + "]"


def control(op: str, **fields: Any) -> str:
    """A server control frame."""
    return dumps({"op": op, **fields})


def error_frame(err: PulseboardError, **extra: Any) -> str:
    return control("error", code=err.code, detail=err.detail, **extra)


# --- starting points and the replay rule -------------------------------------


@dataclass(frozen=True, slots=True)
class Live:
    """Start from now."""


@dataclass(frozen=True, slots=True)
class Backfill:
    """Send up to `n` recent messages first."""

    n: int


@dataclass(frozen=True, slots=True)
class Since:
    """Replay everything after `seq` of stream `epoch`."""

    seq: int
    epoch: str


Start = Live | Backfill | Since


def parse_start(spec: object) -> Start:
    """Decode one channel's starting point from a `subscribe` op."""
    if spec is None:
        return Live()
    if not isinstance(spec, dict):
        raise bad_request("a starting point is null, {'backfill': N} or {'since': N, 'epoch': E}")
    if "since" in spec:
        seq, epoch = spec.get("since"), spec.get("epoch")
        if not _is_count(seq) or not isinstance(epoch, str):
            raise bad_request("'since' needs a non-negative int and an 'epoch' string")
        return Since(int(seq), epoch)  # type: ignore[arg-type]
    if "backfill" in spec:
        n = spec.get("backfill")
        if not _is_count(n):
            raise bad_request("'backfill' must be a non-negative int")
        return Backfill(int(n))  # type: ignore[arg-type]
    if not spec:
        return Live()
    raise bad_request(f"unknown starting point keys {sorted(spec)}")


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What to send a subscriber: replay seqs `after`+1 .. top (or `last` recent ones)."""

    recovered: bool
    after: int | None = None  # replay everything with seq > after
    last: int = 0  # or the last N messages


def plan_replay(start: Start, epoch: str, first: int, top: int) -> ReplayPlan:
    """Decide the replay for a channel whose history holds seqs `first`..`top`.

    `first` is `top + 1` when the history is empty. The caller sends the
    `subscribed` op with `recovered`, then the planned messages, then live ones.
    """
    if isinstance(start, Live):
        return ReplayPlan(recovered=True)
    if isinstance(start, Backfill):
        return ReplayPlan(recovered=True, last=start.n)
    if start.epoch != epoch or start.seq > top:
        # Another numbering: nothing the client holds lines up with ours.
        return ReplayPlan(recovered=False)
    if start.seq + 1 < first:
        return ReplayPlan(recovered=False, after=start.seq)
    return ReplayPlan(recovered=True, after=start.seq)


class HistoryWindow:
    """The last `maxlen` envelopes of one channel, with the channel's epoch; `bytes` is the
    length of their JSON text in all (what a byte cap on history counts)."""

    def __init__(self, epoch: str, maxlen: int, top: int = 0) -> None:
        if maxlen < 1:
            raise ValueError("history must keep at least one message")
        self.epoch = epoch
        self.top = top
        self.bytes = 0
        self._items: deque[Envelope] = deque(maxlen=maxlen)

    @property
    def first(self) -> int:
        return self._items[0].seq if self._items else self.top + 1

    def __len__(self) -> int:
        return len(self._items)

    def next_seq(self) -> int:
        return self.top + 1

    def append(self, env: Envelope) -> None:
        if env.seq != self.top + 1:
            raise ValueError(f"seq {env.seq} does not follow {self.top}")
        if len(self._items) == self._items.maxlen:
            self.bytes -= len(self._items[0].raw)
        self._items.append(env)
        self.bytes += len(env.raw)
        self.top = env.seq

    def drop(self, n: int, keep_bytes: int | None = None) -> int:
        """Drop up to `n` oldest envelopes, stopping once `bytes` <= `keep_bytes` (when
        given); the newest always stays. How many went (a byte cap on history)."""
        items, gone = self._items, 0
        while gone < n and len(items) > 1 and (keep_bytes is None or self.bytes > keep_bytes):
            self.bytes -= len(items.popleft().raw)
            gone += 1
        return gone

    def expire(self, cutoff: float) -> int:
        """Drop the head's envelopes whose ts is before `cutoff` (retention); how many went.
        Stops at the first newer one, so history never has holes."""
        items, n = self._items, 0
        while items and items[0].ts < cutoff:
            self.bytes -= len(items.popleft().raw)
            n += 1
        return n

    def after(self, seq: int, limit: int | None = None) -> list[Envelope]:
        """Envelopes with seq > `seq`, oldest first, at most `limit` of them."""
        start = max(seq + 1, self.first) - self.first
        stop = len(self._items) if limit is None else min(len(self._items), start + limit)
        return [self._items[i] for i in range(start, stop)] if start < stop else []

    def last(self, n: int) -> list[Envelope]:
        n = min(n, len(self._items))
        return [self._items[i] for i in range(len(self._items) - n, len(self._items))]

    def replay(self, plan: ReplayPlan) -> list[Envelope]:
        if plan.after is not None:
            return self.after(plan.after)
        if plan.last:
            return self.last(plan.last)
        return []


# --- client ops -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: dict[str, Start]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    ch: str
    data: dict[str, Any]
    id: Any = None
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientOp = Subscribe | Unsubscribe | Publish | Refresh | Ping


def decode_client_frame(text: str) -> ClientOp:
    """Decode one client text frame; raise `bad_request` saying what was wrong."""
    try:
        # NaN/Infinity become null: in `data` as `check_data` would make them, and an
        # op's `id` is echoed back in `ack`/`error`, which can't carry them (issue 13).
        obj = json.loads(text, parse_constant=lambda _: None)
    except ValueError:
        raise bad_request("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise bad_request("a client frame is a JSON object with an 'op'")
    op = obj.get("op")
    if op == "subscribe":
        chs = obj.get("ch")
        if isinstance(chs, list):
            chs = {c: None for c in chs if isinstance(c, str)} if all(
                isinstance(c, str) for c in chs
            ) else None
        if not isinstance(chs, dict) or not chs:
            raise bad_request("'subscribe' needs 'ch': an object of channel -> starting point")
        return Subscribe({check_channel(c): parse_start(s) for c, s in chs.items()})
    if op == "unsubscribe":
        chs = obj.get("ch")
        if isinstance(chs, str):
            chs = [chs]
        if not isinstance(chs, list) or not chs:
            raise bad_request("'unsubscribe' needs 'ch': a list of channels")
        return Unsubscribe(tuple(check_channel(c) for c in chs))
    if op == "publish":
        ts = obj.get("ts")
        if not encodable(obj.get("id")):
            raise bad_request("'id' holds text that can't be encoded as UTF-8 (a lone surrogate): send valid Unicode")
        return Publish(
            check_channel(obj.get("ch")),
            check_data(obj.get("data")),
            obj.get("id"),
            None if ts is None else check_ts(ts, 0.0),
        )
    if op == "refresh":
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise bad_request("'refresh' needs 'token': a JWT string")
        return Refresh(token)
    if op == "ping":
        return Ping()
    raise bad_request(f"unknown op {str(op)[:40]!r}: use subscribe, unsubscribe, publish, refresh or ping")


# --- cursors (SSE event ids, long-poll cursors) -----------------------------------

Positions = dict[str, tuple[str, int]]


def encode_cursor(positions: Mapping[str, tuple[str, int]]) -> str:
    """An opaque, URL-safe cursor holding each channel's (epoch, seq)."""
    obj = {ch: [ep, seq] for ch, (ep, seq) in sorted(positions.items())}
    return base64.urlsafe_b64encode(dumps(obj).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Positions:
    """Inverse of `encode_cursor`; raise `bad_request` for anything else."""
    try:
        pad = "=" * (-len(cursor) % 4)
        obj = json.loads(base64.urlsafe_b64decode(cursor + pad))
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: nested too deep
        raise bad_request("cursor is not one this server issued") from None
    if not isinstance(obj, dict):
        raise bad_request("cursor is not one this server issued")
    out: Positions = {}
    for ch, pos in obj.items():
        if (
            not isinstance(pos, list)
            or len(pos) != 2
            or not isinstance(pos[0], str)
            or not _is_count(pos[1])
        ):
            raise bad_request("cursor is not one this server issued")
        out[check_channel(ch)] = (pos[0], pos[1])
    return out


# --- one client's view of one channel ------------------------------------------------


class ChannelSync:
    """Keeps one subscriber's position on one channel and filters what it is sent.

    While a replay is being fetched (`syncing`), live envelopes are held in a
    bounded buffer; `finish` returns those the replay did not already cover.
    Afterwards `accept(seq)` tells whether a live envelope is new to the client.
    """

    def __init__(self, ch: str, max_pending: int = 10_000) -> None:
        self.ch = ch
        self.epoch = ""
        self.seq = 0  # the last seq the client was sent
        self.syncing = True
        self.overflowed = False
        self._pending: deque[Envelope] = deque()
        self._max_pending = max_pending

    def hold(self, env: Envelope) -> None:
        """Buffer a live envelope that arrived during the replay."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.overflowed = True
        self._pending.append(env)

    def finish(self, epoch: str, seq: int) -> list[Envelope]:
        """The replay is sent up to `seq`: go live, return held envelopes to send next."""
        self.epoch, self.seq, self.syncing = epoch, seq, False
        out = [e for e in self._pending if e.seq > seq]
        self._pending.clear()
        if out:
            self.seq = out[-1].seq
        return out

    def accept(self, seq: int) -> bool:
        """True when a live envelope with `seq` is new to this client (and record it)."""
        if seq <= self.seq:
            return False
        self.seq = seq
        return True


def iter_envelopes(frame: object) -> Iterator[Envelope]:
    """Yield the envelopes of a decoded server data frame."""
    if not isinstance(frame, list):
        raise bad_request("a data frame is a JSON array of envelopes")
    for obj in frame:
        yield Envelope.from_obj(obj)
