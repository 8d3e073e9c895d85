"""`history_range` on the embedded store: the downsampling rule of `downsample.pick`,
computed from the per-block summaries where a whole block falls in one bucket and
from the stored rows elsewhere (range edges, bucket edges, the unfinished last block).
The picks are the same as `pick` over every row (the contract suite checks it)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pulseboard.protocol import Envelope

from .downsample import Bucket, Grid, bucket_count
from .sqlite_store import BLOCK, FAN, SPAN2, envelopes, flat


def read_range(
    conn: sqlite3.Connection, ch_id: int, first: int, t0: float | None, t1: float | None, points: int
) -> tuple[list[Envelope], bool]:
    """(chosen envelopes in seq order, downsampled?) for t0 <= ts <= t1 of channel `ch_id`."""
    lo_t, hi_t = conn.execute(  # two subqueries: each is one index probe (min and max together scan)
        "SELECT (SELECT min(ts) FROM msgs WHERE ch=?1), (SELECT max(ts) FROM msgs WHERE ch=?1)", (ch_id,)
    ).fetchone()
    if lo_t is None:
        return [], False
    lo = t0 if t0 is not None else lo_t
    hi = t1 if t1 is not None else hi_t
    if hi < lo:
        return [], False
    total = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM msgs WHERE ch=? AND ts>=? AND ts<=? LIMIT ?)",
        (ch_id, lo, hi, points + 1),
    ).fetchone()[0]
    if total <= points:
        rows = conn.execute(
            "SELECT raw FROM msgs WHERE ch=? AND ts>=? AND ts<=? ORDER BY seq", (ch_id, lo, hi)
        ).fetchall()
        return envelopes([r for (r,) in rows]), False

    # Whole blocks inside [lo, hi] come from their summaries (level 2 where a level-2 block is
    # inside, else level 1); the rest row by row.
    big = _summaries(conn, "SELECT k, t_min, t_max, stats FROM blocks2 WHERE ch=? AND k*?+1>=? AND t_min>=? "
                     "AND t_max<=?", (ch_id, SPAN2, first, lo, hi))
    summaries = _summaries(conn, "SELECT k, t_min, t_max, stats FROM blocks WHERE ch=? AND k*?+1>=? AND t_min>=? "
                           "AND t_max<=? AND k/? NOT IN (SELECT value FROM json_each(?))",
                           (ch_id, BLOCK, first, lo, hi, FAN, json.dumps([k for k, *_ in big])))
    names: set[str] = set()
    for *_, st in big + summaries:
        names.update(e[0] for e in st)
    covered = {k for k, *_ in summaries} | {k * FAN + j for k, *_ in big for j in range(FAN)}
    spans = _loose_spans(conn, ch_id, first, lo, hi, covered)
    names.update(k for (k,) in _over(conn, spans, ch_id, lo, hi, "DISTINCT j.key", FIELDS, ""))
    grid = Grid(lo, hi, bucket_count(points, len(names)))

    buckets: dict[int, Bucket] = {}
    count = 0

    def bucket(b: int) -> Bucket:
        got = buckets.get(b)
        if got is None:
            got = buckets[b] = Bucket()
        return got

    def absorb(i: int, first_seq: int, last_seq: int, st: list[list[Any]]) -> None:
        bk = bucket(i)
        bk.first = (first_seq, 0.0) if bk.first is None or first_seq < bk.first[0] else bk.first
        bk.last = (last_seq, 0.0) if bk.last is None or last_seq > bk.last[0] else bk.last
        for f, lv, ls, hv, hs in st:
            bk.add_extreme(f, lv, ls, hv, hs)

    split: list[int] = []  # level-2 blocks across a bucket edge: their level-1 summaries instead
    for k, a, b, st in big:
        if grid.index(a) != grid.index(b):
            split.append(k)
            continue
        absorb(grid.index(a), k * SPAN2 + 1, (k + 1) * SPAN2, st)
        count += SPAN2
    if split:
        summaries += _summaries(conn, "SELECT k, t_min, t_max, stats FROM blocks WHERE ch=? AND k/? IN "
                                "(SELECT value FROM json_each(?))", (ch_id, FAN, json.dumps(split)))
    for k, a, b, st in summaries:
        ia, ib = grid.index(a), grid.index(b)
        if ia != ib:  # a block across a bucket edge: its rows
            spans.append((k * BLOCK + 1, (k + 1) * BLOCK))
            continue
        absorb(ia, k * BLOCK + 1, (k + 1) * BLOCK, st)
        count += BLOCK
    width = grid.width if grid.width > 0 else 1.0
    b_expr = f"min({grid.nb - 1}, max(0, CAST((m.ts - {lo!r}) / {width!r} AS INTEGER)))"
    if grid.width <= 0:
        b_expr = "0"
    # The other rows, parsed in one json call (SQLite's json_extract per row is several times slower).
    rows = _over(conn, spans, ch_id, lo, hi, f"{b_expr}, m.seq, m.raw", "", "")
    objs = json.loads("[" + ",".join(r for _, _, r in rows) + "]") if rows else []
    count += len(rows)
    for (b, seq, _), obj in zip(rows, objs, strict=True):
        bk = bucket(b)
        if bk.first is None or seq < bk.first[0]:
            bk.first = (seq, 0.0)
        if bk.last is None or seq > bk.last[0]:
            bk.last = (seq, 0.0)
        for f, v in obj["data"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                bk.add_one(f, v, seq, low=True)
                bk.add_one(f, v, seq, low=False)
    keep: set[int] = set()
    for bk in buckets.values():
        keep |= bk.seqs(max(1, points // grid.nb))
    chosen = sorted(keep)
    raws: list[str] = []
    for i in range(0, len(chosen), 500):
        part = chosen[i : i + 500]
        marks = ",".join("?" * len(part))
        raws.extend(
            r for (r,) in conn.execute(
                f"SELECT raw FROM msgs WHERE ch=? AND seq IN ({marks}) ORDER BY seq", (ch_id, *part)
            )
        )
    return envelopes(raws), len(raws) < count


Summary = tuple[int, float, float, list[list[Any]]]  # k, t_min, t_max, [[field, min, seq, max, seq]]


def _summaries(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> list[Summary]:
    rows = conn.execute(query, args).fetchall()
    stats = json.loads("[" + ",".join(st for *_, st in rows) + "]")  # one call: much faster than one per row
    return [(k, a, b, flat(st)) for (k, a, b, _), st in zip(rows, stats, strict=True)]


FIELDS = ", json_each(m.raw, '$.data') j"  # with "j.type IN ('integer', 'real')" below


def _over(
    conn: sqlite3.Connection, spans: list[tuple[int, int]], ch_id: int, lo: float, hi: float,
    select: str, join: str, tail: str,
) -> list[tuple[Any, ...]]:
    """`SELECT select` over the rows in `spans` (seq ranges) with lo <= ts <= hi, in one query."""
    if not spans:
        return []
    out: list[tuple[Any, ...]] = []
    where = " AND j.type IN ('integer', 'real')" if join else ""
    for i in range(0, len(spans), 4000):
        part = spans[i : i + 4000]
        values = ",".join("(?,?)" for _ in part)
        flat = [x for span in part for x in span]
        out.extend(conn.execute(
            f"WITH spans(a, b) AS (VALUES {values}) SELECT {select} FROM spans JOIN msgs m "
            f"ON m.ch=? AND m.seq>=spans.a AND m.seq<=spans.b{join} WHERE m.ts>=? AND m.ts<=?{where} {tail}",
            (*flat, ch_id, lo, hi),
        ).fetchall())
    return out


def _loose_spans(
    conn: sqlite3.Connection, ch_id: int, first: int, lo: float, hi: float, covered: set[int]
) -> list[tuple[int, int]]:
    """Seq ranges outside the summarized-and-inside blocks that may hold rows in [lo, hi];
    blocks wholly outside [lo, hi] are skipped by their summary, so a range at the end of
    a long channel reads only its own edges."""
    spans: list[tuple[int, int]] = []
    last_k = -1
    for k, a, b in conn.execute("SELECT k, t_min, t_max FROM blocks WHERE ch=? ORDER BY k", (ch_id,)):
        last_k = k
        if k in covered or ((b < lo or a > hi) and k * BLOCK + 1 >= first):
            continue
        spans.append((k * BLOCK + 1, (k + 1) * BLOCK))
    spans.append(((last_k + 1) * BLOCK + 1, 1 << 62))  # the unfinished last block
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and merged[-1][1] + 1 >= a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


__all__ = ["read_range"]
