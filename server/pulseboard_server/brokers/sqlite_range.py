"""`history_range` on the embedded store: the downsampling rule of `downsample.pick`,
computed from the per-block summaries where a whole block falls in one bucket, from the
per-block columns where a bucket edge or the range's edge cuts a block, and from the
stored rows elsewhere (the unfinished last block, blocks written before columns existed).
The picks are the same as `pick` over every row (the contract suite checks it)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pulseboard.protocol import Envelope

from .downsample import Bucket, Grid, bucket_count
from .sqlite_cols import Columns, decode, names_in
from .sqlite_cols import absorb as absorb_columns
from .sqlite_store import BLOCK, FAN, SPAN2, STORED, VALID_RAW, flat, parse_rows, stored


def read_range(
    conn: sqlite3.Connection, ch: str, ch_id: int, first: int, t0: float | None, t1: float | None, points: int
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
            f"SELECT {STORED} FROM msgs WHERE ch=? AND ts>=? AND ts<=? ORDER BY seq", (ch_id, lo, hi)
        ).fetchall()
        return stored(ch, rows), False

    # Whole blocks inside [lo, hi] come from their summaries (level 2 where a level-2 block is
    # inside, else level 1); the rest row by row.
    big = _summaries(conn, "SELECT k, t_min, t_max, stats FROM blocks2 WHERE ch=? AND k*?+1>=? AND t_min>=? "
                     "AND t_max<=?", (ch_id, SPAN2, first, lo, hi))
    # The level-1 blocks outside those level-2 blocks: the runs of k between them, each an
    # index range (a filter on k/FAN would read every block of the channel).
    gaps, at = [], 0
    for k2 in sorted(k for k, *_ in big):
        if k2 * FAN > at:
            gaps.append((at, k2 * FAN - 1))
        at = (k2 + 1) * FAN
    gaps.append((at, 1 << 62))
    summaries = _summaries(conn, "SELECT b.k, b.t_min, b.t_max, b.stats FROM json_each(?) g CROSS JOIN blocks b "
                           "ON b.ch=? AND b.k>=json_extract(g.value, '$[0]') AND b.k<=json_extract(g.value, '$[1]') "
                           "WHERE b.k*?+1>=? AND b.t_min>=? AND b.t_max<=?",
                           (json.dumps(gaps), ch_id, BLOCK, first, lo, hi))
    names: set[str] = set()
    for *_, st in big + summaries:
        names.update(e[0] for e in st)
    # The blocks not wholly inside [lo, hi] that may hold rows in it (the range's edges, a partly
    # trimmed head), found in SQL rather than by walking every block; with columns they are
    # answered from those, else from their rows, like the unfinished last block.
    if t0 is None and t1 is None:  # [lo, hi] spans every stored row: only a partly trimmed head
        head = (first + BLOCK - 2) // BLOCK  # the blocks with k*BLOCK+1 < first: k < head
        edge = [k for (k,) in conn.execute("SELECT k FROM blocks WHERE ch=? AND k<?", (ch_id, head))]
    else:
        edge = [k for (k,) in conn.execute(
            "SELECT k FROM blocks WHERE ch=? AND NOT (k*?+1>=? AND ((t_min>=? AND t_max<=?) OR t_max<? OR t_min>?))",
            (ch_id, BLOCK, first, lo, hi, lo, hi))]
    last_k = conn.execute("SELECT max(k) FROM blocks WHERE ch=?", (ch_id,)).fetchone()[0]
    edge_cols = _columns(conn, ch_id, [k for k in edge if k * BLOCK + 1 >= first])
    spans = [(k * BLOCK + 1, (k + 1) * BLOCK) for k in edge if k not in edge_cols]
    spans.append((((last_k if last_k is not None else -1) + 1) * BLOCK + 1, 1 << 62))  # the unfinished last block
    for cols in edge_cols.values():
        names |= names_in(cols, lo, hi)
    names.update(k for (k,) in _over(conn, spans, ch_id, lo, hi, "DISTINCT j.key", FIELDS, ""))
    grid = Grid(lo, hi, bucket_count(points, len(names)))
    index = grid.indexer()

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
        if index(a) != index(b):
            split.append(k)
            continue
        absorb(index(a), k * SPAN2 + 1, (k + 1) * SPAN2, st)
        count += SPAN2
    if split:
        summaries += _summaries(conn, "SELECT b.k, b.t_min, b.t_max, b.stats FROM json_each(?) g CROSS JOIN blocks b "
                                "ON b.ch=? AND b.k>=g.value*? AND b.k<g.value*?+?",
                                (json.dumps(split), ch_id, FAN, FAN, FAN))
    cut: list[int] = []  # level-1 blocks across a bucket edge: their columns, else their rows
    for k, a, b, st in summaries:
        ia, ib = index(a), index(b)
        if ia != ib:
            cut.append(k)
            continue
        absorb(ia, k * BLOCK + 1, (k + 1) * BLOCK, st)
        count += BLOCK
    cut_cols = _columns(conn, ch_id, cut)
    spans += [(k * BLOCK + 1, (k + 1) * BLOCK) for k in cut if k not in cut_cols]
    for k, cols in (cut_cols | edge_cols).items():
        count += absorb_columns(cols, k * BLOCK, index, lo, hi, bucket)
    width = grid.width if grid.width > 0 else 1.0
    b_expr = f"min({grid.nb - 1}, max(0, CAST((m.ts - {lo!r}) / {width!r} AS INTEGER)))"
    if grid.width <= 0:
        b_expr = "0"
    # The other rows, parsed in one json call (SQLite's json_extract per row is several times slower).
    rows = _over(conn, spans, ch_id, lo, hi, f"{b_expr}, m.seq, m.raw", "", "")
    objs = parse_rows([r for _, _, r in rows])
    count += len(rows)
    for (b, seq, _), obj in zip(rows, objs, strict=True):
        bk = bucket(b)
        if bk.first is None or seq < bk.first[0]:
            bk.first = (seq, 0.0)
        if bk.last is None or seq > bk.last[0]:
            bk.last = (seq, 0.0)
        data = obj.get("data") if isinstance(obj, dict) else None
        for f, v in (data.items() if isinstance(data, dict) else ()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                bk.add_one(f, v, seq, low=True)
                bk.add_one(f, v, seq, low=False)
    keep: set[int] = set()
    for bk in buckets.values():
        keep |= bk.seqs(max(1, points // grid.nb))
    chosen = sorted(keep)
    picked: list[Any] = []
    for i in range(0, len(chosen), 500):
        part = chosen[i : i + 500]
        marks = ",".join("?" * len(part))
        picked += conn.execute(
            f"SELECT {STORED} FROM msgs WHERE ch=? AND seq IN ({marks}) ORDER BY seq", (ch_id, *part)
        )
    return stored(ch, picked), len(picked) < count


Summary = tuple[int, float, float, list[list[Any]]]  # k, t_min, t_max, [[field, min, seq, max, seq]]


def _columns(conn: sqlite3.Connection, ch_id: int, ks: list[int]) -> dict[int, Columns]:
    """The decodable columns of blocks `ks` (a block without them is read from its rows)."""
    if not ks:
        return {}
    out: dict[int, Columns] = {}
    for k, data in conn.execute(
        "SELECT c.k, c.data FROM json_each(?) j CROSS JOIN cols c ON c.ch=? AND c.k=j.value", (json.dumps(ks), ch_id)
    ):
        cols = decode(data) if isinstance(data, bytes) else None
        if cols is not None:
            out[k] = cols
    return out


def _summaries(conn: sqlite3.Connection, query: str, args: tuple[Any, ...]) -> list[Summary]:
    rows = conn.execute(query, args).fetchall()
    stats = json.loads("[" + ",".join(st for *_, st in rows) + "]")  # one call: much faster than one per row
    return [(k, a, b, st if isinstance(st, list) else flat(st)) for (k, a, b, _), st in zip(rows, stats, strict=True)]


FIELDS = f", json_each({VALID_RAW}, '$.data') j"  # with "j.type IN ('integer', 'real')" below


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


__all__ = ["read_range"]
