"""`history_range` on the embedded store: the downsampling rule of `downsample.pick`,
computed from the per-block summaries where a whole block falls in one bucket and
from the stored rows elsewhere (range edges, bucket edges, the unfinished last block).
The picks are the same as `pick` over every row (the contract suite checks it)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pulseboard.protocol import Envelope

from .downsample import Bucket, Grid, bucket_count, numeric_fields
from .sqlite_store import BLOCK, envelopes

Row = tuple[int, float, str]  # seq, ts, raw


def read_range(
    conn: sqlite3.Connection, ch_id: int, first: int, t0: float | None, t1: float | None, points: int
) -> tuple[list[Envelope], bool]:
    """(chosen envelopes in seq order, downsampled?) for t0 <= ts <= t1 of channel `ch_id`."""
    lo_t, hi_t = conn.execute("SELECT min(ts), max(ts) FROM msgs WHERE ch=?", (ch_id,)).fetchone()
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

    # Whole blocks inside [lo, hi] come from their summaries; the rest row by row.
    summaries: list[tuple[int, float, float, dict[str, Any]]] = [
        (k, a, b, json.loads(st)) for k, a, b, st in conn.execute(
            "SELECT k, t_min, t_max, stats FROM blocks WHERE ch=? AND k*?+1>=? AND t_min>=? AND t_max<=?",
            (ch_id, BLOCK, first, lo, hi),
        )
    ]
    names: set[str] = set()
    for *_, st in summaries:
        names.update(st["lo"])
    covered = {k for k, *_ in summaries}
    loose = _loose_rows(conn, ch_id, first, lo, hi, covered)
    parsed = [(seq, ts, json.loads(raw)["data"]) for seq, ts, raw in loose]
    for _, _, data in parsed:
        names.update(k for k, _ in numeric_fields(data))
    grid = Grid(lo, hi, bucket_count(points, len(names)))

    buckets: dict[int, Bucket] = {}
    count = 0

    def bucket(b: int) -> Bucket:
        got = buckets.get(b)
        if got is None:
            got = buckets[b] = Bucket()
        return got

    split: list[int] = []
    for k, a, b, st in summaries:
        ia, ib = grid.index(a), grid.index(b)
        if ia != ib:
            split.append(k)
            continue
        bk = bucket(ia)
        first_seq, last_seq = k * BLOCK + 1, (k + 1) * BLOCK
        bk.first = (first_seq, a) if bk.first is None or first_seq < bk.first[0] else bk.first
        bk.last = (last_seq, b) if bk.last is None or last_seq > bk.last[0] else bk.last
        for f, (lv, ls) in st["lo"].items():
            hv, hs = st["hi"][f]
            bk.add_extreme(f, lv, ls, hv, hs)
        count += BLOCK
    if split:  # blocks across a bucket edge: their rows
        for k in split:
            rows = conn.execute(
                "SELECT seq, ts, raw FROM msgs WHERE ch=? AND seq>? AND seq<=?", (ch_id, k * BLOCK, (k + 1) * BLOCK)
            ).fetchall()
            parsed.extend((seq, ts, json.loads(raw)["data"]) for seq, ts, raw in rows)
    for seq, ts, data in parsed:
        bucket(grid.index(ts)).add(seq, ts, data)
        count += 1
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


def _loose_rows(
    conn: sqlite3.Connection, ch_id: int, first: int, lo: float, hi: float, covered: set[int]
) -> list[Row]:
    """Rows in [lo, hi] outside the summarized-and-inside blocks; blocks wholly outside
    [lo, hi] are skipped by their summary, so a range at the end of a long channel
    reads only its own edges."""
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
    out: list[Row] = []
    for a, b in merged:
        out.extend(
            conn.execute(
                "SELECT seq, ts, raw FROM msgs WHERE ch=? AND seq>=? AND seq<=? AND ts>=? AND ts<=?",
                (ch_id, a, b, lo, hi),
            ).fetchall()
        )
    return out


__all__ = ["read_range"]
