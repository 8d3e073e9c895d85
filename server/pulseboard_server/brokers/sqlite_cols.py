"""Per-block columns of the embedded store: each finished block's timestamps and numeric
values, packed, so that `history_range` answers a block that a bucket edge (or the range's
edge) cuts in two without reading and decoding its rows.

A block's summary answers a block inside one bucket; a block across an edge needs, for each
side, its first and last seq and each field's min and max. Those come from the rows of the
block; decoding them (JSON) was most of a long-range read (docs/performance.md). The columns
hold the same facts in a form that decodes in a few C calls.

Layout of `cols.data` (little-endian), one per finished block of BLOCK rows:

    version (1 byte, 1), fields (u16)
    ts of the BLOCK rows, in seq order (BLOCK x f64)
    per field: name length (u16), name (UTF-8), count m (u8, <= BLOCK),
               the rows holding it (m x u8, offsets in the block, ascending), values (m x f64)

A block whose numbers a float64 can't hold exactly (an int beyond 2**53) gets no columns:
its rows are read as before. So does every block of a store written before columns existed.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .downsample import Bucket
from .sqlite_store import BLOCK

VERSION = 1
_EXACT = 1 << 53
_H = struct.Struct("<H")
_LITTLE = sys.byteorder == "little"


def _f64(values: Iterable[float]) -> bytes:
    a = array("d", values)
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def _un64(raw: bytes | memoryview) -> array[float]:
    a = array("d")
    a.frombytes(raw)
    if not _LITTLE:
        a.byteswap()
    return a


def encode(rows: Sequence[tuple[float, Any]]) -> bytes | None:
    """The columns of one block from its BLOCK rows (ts, data) in seq order; None when a
    float64 can't carry a value exactly (the reader then uses the rows)."""
    if len(rows) != BLOCK:
        return None
    fields: dict[str, tuple[bytearray, list[float]]] = {}
    for off, (_, data) in enumerate(rows):
        if not isinstance(data, dict):
            continue  # a damaged row: no values (a gap), as the row path reads it
        for f, v in data.items():
            if isinstance(v, float):
                if not math.isfinite(v):
                    return None
            elif not isinstance(v, int) or isinstance(v, bool):
                continue
            elif not -_EXACT <= v <= _EXACT:
                return None
            got = fields.get(f)
            if got is None:
                got = fields[f] = (bytearray(), [])
            got[0].append(off)
            got[1].append(v)
    out = [bytes((VERSION,)), _H.pack(len(fields)), _f64(ts for ts, _ in rows)]
    for f, (offs, vals) in fields.items():
        name = f.encode("utf-8", "surrogatepass")
        if len(name) > 0xFFFF:
            return None
        out += [_H.pack(len(name)), name, bytes((len(offs),)), bytes(offs), _f64(vals)]
    return b"".join(out)


Columns = tuple["array[float]", list[tuple[str, bytes, "array[float]"]]]  # ts, [(field, offsets, values)]


def decode(data: bytes) -> Columns | None:
    """`encode`'s columns, or None if the blob isn't one (then the rows are read)."""
    try:
        view = memoryview(data)
        if len(view) < 3 or view[0] != VERSION:
            return None
        (n,) = _H.unpack_from(view, 1)
        pos = 3 + 8 * BLOCK
        ts = _un64(view[3:pos])
        fields = []
        for _ in range(n):
            (ln,) = _H.unpack_from(view, pos)
            name = bytes(view[pos + 2 : pos + 2 + ln]).decode("utf-8", "surrogatepass")
            pos += 2 + ln
            m = view[pos]
            offs = bytes(view[pos + 1 : pos + 1 + m])
            pos += 1 + m
            vals = _un64(view[pos : pos + 8 * m])
            pos += 8 * m
            if len(offs) != m or len(vals) != m:
                return None
            fields.append((name, offs, vals))
        if pos != len(view) or len(ts) != BLOCK:
            return None
        return ts, fields
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None


def names_in(cols: Columns, lo: float, hi: float) -> set[str]:
    """The fields with a value in a row with lo <= ts <= hi."""
    ts, fields = cols
    if ts and lo <= min(ts) and max(ts) <= hi:
        return {f for f, offs, _ in fields if offs}
    inside = [lo <= t <= hi for t in ts]
    return {f for f, offs, _ in fields if any(inside[o] for o in offs)}


def absorb(
    cols: Columns, base: int, index: Callable[[float], int], lo: float, hi: float, bucket: Callable[[int], Bucket]
) -> int:
    """Add the block's rows with lo <= ts <= hi (seqs base+1 .. base+BLOCK) to their buckets,
    exactly as row-by-row `Bucket` additions would; returns how many rows that was."""
    ts, fields = cols
    tl = ts.tolist()
    if tl == sorted(tl):  # the usual case: time goes forward, so each bucket holds a run of rows
        a, b = bisect_left(tl, lo), bisect_right(tl, hi)
        if a >= b:
            return 0
        runs: list[tuple[int, int, int]] = []  # (bucket, first row, row after the last)
        s = a
        while s < b:
            i = index(tl[s])
            e = _run_end(tl, index, i, s + 1, b)
            runs.append((i, s, e))
            s = e
        for i, s, e in runs:
            bk = bucket(i)
            first, last = base + s + 1, base + e
            if bk.first is None or first < bk.first[0]:
                bk.first = (first, 0.0)
            if bk.last is None or last > bk.last[0]:
                bk.last = (last, 0.0)
            for f, offs, vals in fields:
                j0, j1 = bisect_left(offs, s), bisect_left(offs, e)
                if j0 >= j1:
                    continue
                part = vals[j0:j1]
                v = min(part)
                bk.add_one(f, v, base + offs[j0 + part.index(v)] + 1, low=True)
                v = max(part)
                bk.add_one(f, v, base + offs[j0 + part.index(v)] + 1, low=False)
        return b - a
    where = [index(t) if lo <= t <= hi else -1 for t in tl]
    for off, i in enumerate(where):
        if i >= 0:
            bk = bucket(i)
            seq = base + off + 1
            if bk.first is None or seq < bk.first[0]:
                bk.first = (seq, 0.0)
            if bk.last is None or seq > bk.last[0]:
                bk.last = (seq, 0.0)
    for f, offs, vals in fields:
        for off, v in zip(offs, vals, strict=True):
            i = where[off]
            if i >= 0:
                bk = bucket(i)
                bk.add_one(f, v, base + off + 1, low=True)
                bk.add_one(f, v, base + off + 1, low=False)
    return sum(i >= 0 for i in where)


def _run_end(tl: list[float], index: Callable[[float], int], i: int, s: int, b: int) -> int:
    """The first row in [s, b) whose bucket is past `i` (buckets don't fall as ts rises)."""
    lo_, hi_ = s, b
    while lo_ < hi_:
        mid = (lo_ + hi_) // 2
        if index(tl[mid]) > i:
            hi_ = mid
        else:
            lo_ = mid + 1
    return lo_


def block_rows(conn: Any, ch_id: int, k: int) -> list[tuple[float, Any]]:
    """(ts, data) of block k's stored rows, for a block the writer did not see whole in one batch."""
    span = (ch_id, k * BLOCK + 1, (k + 1) * BLOCK)
    rows = conn.execute("SELECT ts, raw FROM msgs WHERE ch=? AND seq>=? AND seq<=? ORDER BY seq", span).fetchall()
    out: list[tuple[float, Any]] = []
    for ts, raw in rows:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        out.append((ts, obj.get("data") if isinstance(obj, dict) else None))
    return out


__all__ = ["Columns", "absorb", "block_rows", "decode", "encode", "names_in"]
