"""The pulseboard wire format: pure, synchronous, no I/O, nothing of either side.

Both the server and the kernel-side client use this module, and it imports only the
standard library (a test checks): error codes, channel names, envelopes and frames,
starting points and cursors. What only the server needs (grants, the replay rule,
history windows, decoding client ops) lives in `pulseboard_server`; the close table
is `pulseboard.closes`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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


# --- channel names --------------------------------------------------------------


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


# --- envelopes ----------------------------------------------------------------


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C encoder made once, without the circular-reference table (`JSONEncoder.encode` builds
# a new C encoder and that table on every call: most of the cost of encoding one envelope).
# A cycle then ends in RecursionError, which `dumps` reports as the ValueError json raises.
_MAKE_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C accelerator
_C_ENCODE: Any = (
    _MAKE_C_ENCODER(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _MAKE_C_ENCODER is not None else None
)


def dumps(obj: object) -> str:
    """Compact JSON, the only encoding on the wire (one encoder, not one per call)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(obj)
    try:
        return "".join(_C_ENCODE(obj, 0))
    except RecursionError:
        raise ValueError("Circular reference detected (or nested too deeply to encode)") from None


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
    def numbered(cls, ch: str, seq: int, ts: float, data: dict[str, Any], head: str, tail: str) -> Envelope:
        """`make` from the text around the seq (`envelope_head(ch)`, `envelope_tail(ts, data)`),
        encoded beforehand: numbering a batch is then a string join per message."""
        return cls(ch, seq, ts, data, head + str(seq) + tail)

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


def envelope_head(ch: str) -> str:
    """An envelope's JSON up to its seq (see `Envelope.numbered`)."""
    return '{"ch":' + dumps(ch) + ',"seq":'


def envelope_tail(ts: float, data: dict[str, Any]) -> str:
    """An envelope's JSON after its seq; ValueError/TypeError for what JSON can't carry."""
    return ',"ts":' + dumps(ts) + ',"data":' + dumps(data) + "}"


def check_data(data: object) -> dict[str, Any]:
    """Return `data` ready to encode; NaN and infinities become null (a gap in a chart).
    Text that UTF-8 can't carry (a lone surrogate) anywhere in it is refused."""
    if not isinstance(data, dict):
        raise bad_request("'data' must be a JSON object")
    if plain_numbers(data):  # the usual metrics: checked in C, without a Python step per field
        return dict(data)
    return _finite(data, 0, "'data'")  # type: ignore[no-any-return]


_NUMBERS = frozenset({int, float})


def plain_numbers_all(datas: list[Any]) -> bool:
    """True when every item of `datas` is a dict that `plain_numbers` takes, checked for the
    whole list at once (a publish body of 2,000 metrics in a few C passes). False says nothing."""
    if not all(type(d) is dict for d in datas):
        return False
    values = [v for d in datas for v in d.values()]
    try:
        if not set(map(type, values)) <= _NUMBERS or not math.isfinite(math.fsum(values)):
            return False
        keys = "".join([k for d in datas for k in d])
    except (TypeError, ValueError, OverflowError):
        return False
    return _UNENCODABLE.search(keys) is None


def plain_numbers(data: dict[Any, Any]) -> bool:
    """True when `data` is flat, every value an int or a finite float and every key encodable
    text: then `_finite` would return it unchanged. False says nothing (`_finite` decides)."""
    try:
        if not set(map(type, data.values())) <= _NUMBERS or not math.isfinite(math.fsum(data.values())):
            return False  # (a sum that overflows, or NaN/inf, takes the long way, which says which field)
        keys = "".join(data)  # TypeError: a key that isn't text
    except (TypeError, ValueError, OverflowError):
        return False
    return _UNENCODABLE.search(keys) is None


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
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # JSON carries any integer, but a browser reads one past the float range as Infinity
        # and would drop the point: store what an infinity gets, null (no value: the chart skips it).
        try:
            float(value)
        except OverflowError:
            return None
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


# --- starting points ---------------------------------------------------------------


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


# --- server data frames ----------------------------------------------------------------


def iter_envelopes(frame: object) -> Iterator[Envelope]:
    """Yield the envelopes of a decoded server data frame."""
    if not isinstance(frame, list):
        raise bad_request("a data frame is a JSON array of envelopes")
    for obj in frame:
        yield Envelope.from_obj(obj)
