"""Downsampling for `history?from&to&points`: pure, shared by every broker.

A range is cut into `nb` equal time buckets. Each bucket keeps its first and
last envelope (by seq) and, for each numeric top-level field of `data`, the
envelope holding that field's minimum and the one holding its maximum (the
lowest seq wins a tie). `nb` is `points // 4` for one numeric field and
shrinks with more fields (`points // (2 + 2 * fields)`), so the answer never
holds more than `points` envelopes. A line drawn through them keeps every
bucket's extremes, so at a width of about `nb` pixels it looks like the line
through every point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulseboard.protocol import Envelope

MIN_POINTS = 4
MAX_POINTS = 100_000


def numeric_fields(data: dict[str, Any]) -> Iterable[tuple[str, float]]:
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield k, v


def bucket_count(points: int, fields: int) -> int:
    """How many buckets fit `points` envelopes when each may keep 2 + 2*fields."""
    return max(1, min(points // 4, points // (2 + 2 * max(1, fields))))


@dataclass(slots=True)
class Bucket:
    """The picks of one bucket: (seq, ts) of first/last, (value, seq) of each field's min/max."""

    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None
    lo: dict[str, tuple[float, int]] = field(default_factory=dict)
    hi: dict[str, tuple[float, int]] = field(default_factory=dict)

    def add(self, seq: int, ts: float, data: dict[str, Any]) -> None:
        if self.first is None or seq < self.first[0]:
            self.first = (seq, ts)
        if self.last is None or seq > self.last[0]:
            self.last = (seq, ts)
        for k, v in numeric_fields(data):
            self.add_extreme(k, v, seq, v, seq)

    def add_extreme(self, k: str, lo: float, lo_seq: int, hi: float, hi_seq: int) -> None:
        self.add_one(k, lo, lo_seq, low=True)
        self.add_one(k, hi, hi_seq, low=False)

    def add_one(self, k: str, v: float, seq: int, low: bool) -> None:
        """A candidate for field `k`'s min (`low`) or max; the lower seq wins a tie."""
        side = self.lo if low else self.hi
        cur = side.get(k)
        if cur is None or (v < cur[0] if low else v > cur[0]) or (v == cur[0] and seq < cur[1]):
            side[k] = (v, seq)

    def seqs(self, limit: int) -> set[int]:
        """The picks, at most `limit`: first and last, then each field's min and max by name."""
        order = [self.first[0], self.last[0]] if self.first is not None and self.last is not None else []
        for k in sorted(self.lo):
            order += [self.lo[k][1], self.hi[k][1]]
        out: set[int] = set()
        for s in order:
            if len(out) >= limit:
                break
            out.add(s)
        return out


class Grid:
    """`nb` equal buckets over [t0, t1]."""

    def __init__(self, t0: float, t1: float, nb: int) -> None:
        self.t0, self.t1, self.nb = t0, t1, nb
        self.width = (t1 - t0) / nb if t1 > t0 else 0.0

    def index(self, ts: float) -> int:
        if self.width <= 0:
            return 0
        return min(self.nb - 1, max(0, int((ts - self.t0) / self.width)))

    def indexer(self) -> Callable[[float], int]:
        """`index` as a function with the grid bound in (a long read calls it thousands of times)."""
        if self.width <= 0:
            return lambda ts: 0
        t0, width, last = self.t0, self.width, self.nb - 1

        def index(ts: float) -> int:
            i = int((ts - t0) / width)
            return last if i > last else 0 if i < 0 else i

        return index


def pick(envs: Sequence[Envelope], t0: float | None, t1: float | None, points: int) -> tuple[list[Envelope], bool]:
    """Downsample `envs` (the channel's envelopes, seq order) to at most `points`.

    Only envelopes with t0 <= ts <= t1 count (None: unbounded). Returns the
    chosen envelopes in seq order and whether any in the range was left out.
    """
    inside = [e for e in envs if (t0 is None or e.ts >= t0) and (t1 is None or e.ts <= t1)]
    if len(inside) <= points:
        return inside, False
    lo = t0 if t0 is not None else min(e.ts for e in inside)
    hi = t1 if t1 is not None else max(e.ts for e in inside)
    names: set[str] = set()
    for e in inside:
        names.update(k for k, _ in numeric_fields(e.data))
    grid = Grid(lo, hi, bucket_count(points, len(names)))
    buckets: dict[int, Bucket] = {}
    for e in inside:
        b = grid.index(e.ts)
        bucket = buckets.get(b)
        if bucket is None:
            bucket = buckets[b] = Bucket()
        bucket.add(e.seq, e.ts, e.data)
    keep: set[int] = set()
    for bucket in buckets.values():
        keep |= bucket.seqs(max(1, points // grid.nb))
    chosen = [e for e in inside if e.seq in keep]
    return chosen, len(chosen) < len(inside)


__all__ = ["MAX_POINTS", "MIN_POINTS", "Bucket", "Grid", "bucket_count", "numeric_fields", "pick"]
