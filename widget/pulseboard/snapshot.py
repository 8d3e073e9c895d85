"""The kernel's snapshot of a chart: its range read from the server's `history`.

`build` is the pure core: envelopes in, the widget's snapshot dict out (the same shape
the browser writes, `{"v": 1, "series", "x", "y"}`, plus `gaps`, `source` and
`downsampled`). `fetch` is the thin edge: `GET history?from&to&points` where the
server answers it, else exact `since/limit` pages, both bounded.

Bounds: at most `MAX_FETCH` envelopes are read per channel (older ones beyond it are
left out and the snapshot says `downsampled`), and a snapshot holds at most
`points` rows per channel and `MAX_CELLS` values in all (rows x series).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

POINTS = 2000  # rows per channel in a snapshot: about four per pixel column of a wide chart
MAX_FETCH = 200_000  # envelopes read per channel when the server cannot downsample
MAX_CELLS = 60_000  # rows x series in one snapshot (keeps the saved notebook small)
PAGE = 1000
MAX_CHANNELS = 256  # channels a pattern brings in, as in the live chart (js/src/live.ts)


class SnapshotError(Exception):
    """The server could not be read; `str(e)` says why in one line (`status`: the HTTP status, if any)."""

    def __init__(self, detail: str, status: int = 0) -> None:
        super().__init__(detail)
        self.status = status


@dataclass
class Env:
    ch: str
    seq: int
    ts: float
    data: dict[str, Any]


@dataclass
class Fetched:
    envs: list[Env] = field(default_factory=list)
    downsampled: bool = False
    epoch: str = ""
    top: int = 0  # the channel's newest seq when it was read


# --- the pure core -------------------------------------------------------------------


def _x_of(env: Env, x_field: str | None) -> float | None:
    v = env.ts if x_field is None else env.data.get(x_field)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def thin(envs: Sequence[Env], points: int, x_field: str | None) -> list[Env]:
    """At most about `points` envelopes: per x bucket the first, the last and the ones holding
    each field's min and max. The same rule as the server's `history?points=`, so a line keeps
    its shape and its extremes."""
    if len(envs) <= points:
        return list(envs)
    xs = [_x_of(e, x_field) for e in envs]
    known = [x for x in xs if x is not None]
    if not known:
        return []
    lo, hi = min(known), max(known)
    buckets = max(1, points // 4)
    while True:
        width = (hi - lo) / buckets or 1.0
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        ext: dict[tuple[int, str], list[Any]] = {}  # [min, its index, max, its index]
        for i, x in enumerate(xs):
            if x is None:
                continue
            b = min(buckets - 1, int((x - lo) / width))
            first.setdefault(b, i)
            last[b] = i
            for f, v in envs[i].data.items():
                if f == x_field or not _numeric(v):
                    continue
                cur = ext.get((b, f))
                if cur is None:
                    ext[(b, f)] = [v, i, v, i]
                    continue
                if v < cur[0]:
                    cur[0], cur[1] = v, i
                if v > cur[2]:
                    cur[2], cur[3] = v, i
        keep = set(first.values()) | set(last.values())
        keep.update(c[1] for c in ext.values())
        keep.update(c[3] for c in ext.values())
        if len(keep) <= points or buckets == 1:  # many fields keep more per bucket: fewer buckets
            return [envs[i] for i in sorted(keep)]
        buckets = max(1, buckets * points // len(keep) - 1)


def build(
    per_channel: dict[str, Fetched],
    fields: Sequence[str] | None,
    x_field: str | None,
    points: int = POINTS,
) -> dict[str, Any]:
    """The snapshot dict for the widget state (and the SVG and the report).

    Rows are sorted by x; `y[i][r]` is series i's value at row r or null (that row came
    from another channel, or lacks the field). `gaps` maps a channel to the x values
    after which its lines break (a hole in the numbering, seen only in exact data).
    With an `x` data field, a channel whose x goes backwards starts a new run and only
    the newest run is kept, as the live chart does. Over `MAX_CELLS`, every channel is
    thinned further (the whole range stays, with fewer rows).
    """
    series: list[tuple[str, str]] = []
    index: dict[tuple[str, str], int] = {}

    def series_of(ch: str, f: str) -> int:
        if (ch, f) not in index:
            index[(ch, f)] = len(series)
            series.append((ch, f))
        return index[(ch, f)]

    for f in fields or ():
        for ch in per_channel:
            series_of(ch, f)
    rows: list[tuple[float, list[tuple[int, float]]]] = []
    gaps: dict[str, list[float]] = {}
    downsampled = False
    for ch, got in per_channel.items():
        envs = sorted(got.envs, key=lambda e: e.seq)
        if x_field is not None:  # keep the newest run only
            start = 0
            for i in range(1, len(envs)):
                a, b = _x_of(envs[i - 1], x_field), _x_of(envs[i], x_field)
                if a is not None and b is not None and b < a:
                    start = i
            envs = envs[start:]
        kept = thin(envs, points, x_field)
        exact = not got.downsampled and len(kept) == len(envs)
        downsampled = downsampled or not exact
        prev: Env | None = None
        for e in kept:
            x = _x_of(e, x_field)
            if x is None:
                continue
            if exact and prev is not None and e.seq != prev.seq + 1:
                gaps.setdefault(ch, []).append(_x_of(prev, x_field) or 0.0)
            prev = e
            names = fields if fields is not None else list(e.data)
            vals = [(series_of(ch, f), float(e.data[f])) for f in names
                    if f != x_field and _numeric(e.data.get(f))]
            rows.append((x, vals))
    cells = max(1, len(series)) * len(rows)
    if cells > MAX_CELLS and points > 8:
        return build(per_channel, fields, x_field, max(8, points * MAX_CELLS // cells))
    rows.sort(key=lambda r: r[0])
    y: list[list[float | None]] = [[None] * len(rows) for _ in series]
    for r, (_x, vals) in enumerate(rows):
        for i, v in vals:
            y[i][r] = v
    return {
        "v": 1,
        "source": "kernel",
        "taken": round(time.time(), 3),
        "series": [{"ch": ch, "field": f} for ch, f in series],
        "x": [r[0] for r in rows],
        "y": y,
        "gaps": gaps,
        "downsampled": downsampled,
        # What each channel held when read: `tops` tells whether a new snapshot would differ.
        "tops": {ch: [got.epoch, got.top] for ch, got in per_channel.items()},
    }


# --- the edge: GET history ---------------------------------------------------------------


def _get(url: str, token: str, params: dict[str, Any], timeout: float, path: str = "history") -> dict[str, Any]:
    q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{url.rstrip('/')}/{path}?{q}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {"msgs": [], "seq": 0, "first": 1}
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise SnapshotError(f"history of {params.get('ch')!r} refused ({e.code}): {detail}", e.code) from None
    except (OSError, ValueError) as e:
        raise SnapshotError(f"cannot read history from {url}: {getattr(e, 'reason', e)}") from None


def _envs(body: dict[str, Any]) -> list[Env]:
    out = []
    for m in body.get("msgs") or []:
        if isinstance(m, dict) and isinstance(m.get("data"), dict):
            out.append(Env(str(m.get("ch")), int(m.get("seq", 0)), float(m.get("ts", 0.0)), m["data"]))
    return out


def fetch(
    url: str, token: str, ch: str, t0: float | None, t1: float | None,
    points: int = POINTS, timeout: float = 10.0,
) -> Fetched:
    """One channel's envelopes in [t0, t1] (None: all that is kept), bounded.

    Asks for `from/to/points` first; a server that answers it says `downsampled`. An
    older server ignores those parameters: then read exact pages (`since/limit`), newest
    `MAX_FETCH` at most, and keep those in the range.
    """
    body = _get(url, token, {"ch": ch, "from": t0, "to": t1, "points": points}, timeout)
    epoch, top, first = str(body.get("epoch") or ""), int(body.get("seq") or 0), int(body.get("first") or 1)
    if "downsampled" in body:
        return Fetched(_envs(body), bool(body["downsampled"]), epoch, top)
    return fetch_pages(url, token, ch, t0, t1, first, top, epoch, timeout)


def fetch_pages(
    url: str, token: str, ch: str, t0: float | None, t1: float | None,
    first: int, top: int, epoch: str, timeout: float = 10.0,
) -> Fetched:
    """The exact path, for servers that can't downsample: pages of `since/limit` from `first`
    to `top`, newest `MAX_FETCH` at most, keeping those in [t0, t1]."""
    since = max(first - 1, top - MAX_FETCH, 0)
    truncated = since > first - 1
    envs: list[Env] = []
    size = PAGE
    while since < top:
        try:
            page = _envs(_get(url, token, {"ch": ch, "since": since, "limit": min(size, top - since)}, timeout))
        except SnapshotError as e:
            if e.status != 400 or size == 1:
                raise
            size = max(1, size // 4)  # a server with a smaller --history caps `limit` lower
            continue
        if not page:
            break
        envs.extend(e for e in page if (t0 is None or e.ts >= t0) and (t1 is None or e.ts <= t1))
        since = page[-1].seq
    return Fetched(envs, truncated, epoch, top)


def expand(url: str, token: str, channels: Iterable[str], timeout: float = 5.0) -> list[str]:
    """The channels with each pattern (`train.*`) replaced by the readable channels it matches
    (`GET channels`), as the live chart shows them."""
    chs = list(channels)
    if not any("*" in c or "?" in c for c in chs):
        return chs
    listed = _get(url, token, {}, timeout, path="channels").get("channels") or []
    names = sorted(str(c.get("ch")) for c in listed if isinstance(c, dict))
    out: list[str] = []
    for c in chs:
        for name in [n for n in names if fnmatchcase(n, c)] if ("*" in c or "?" in c) else [c]:
            if name not in out:
                out.append(name)
    return out[:MAX_CHANNELS]


def tops(url: str, token: str, channels: Iterable[str], timeout: float = 5.0) -> dict[str, list[Any]]:
    """Each channel's `[epoch, newest seq]` now (one small request each), to compare with a
    snapshot's `tops`: equal means a new snapshot would hold the same data."""
    out: dict[str, list[Any]] = {}
    for ch in expand(url, token, channels, timeout):
        body = _get(url, token, {"ch": ch, "limit": 1}, timeout)
        out[ch] = [str(body.get("epoch") or ""), int(body.get("seq") or 0)]
    return out


def take(
    url: str, token: str, channels: Iterable[str], fields: Sequence[str] | None,
    x_field: str | None, window: float | None, points: int = POINTS, timeout: float = 5.0,
) -> dict[str, Any]:
    """Read every channel's range (the last `window` seconds for a time axis, all kept for a
    data-field axis) and build the snapshot. Raises SnapshotError."""
    t0 = None if (x_field is not None or window is None) else time.time() - window
    got = {ch: fetch(url, token, ch, t0, None, points, timeout) for ch in expand(url, token, channels, timeout)}
    return build(got, fields, x_field, points)
