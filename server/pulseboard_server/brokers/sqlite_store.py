"""The embedded store's file: schema, the one writer thread, reads and trimming.

Layout (SQLite, WAL, synchronous=NORMAL: a commit survives the process being
killed; an OS crash may lose the last commits, see `Store.open`):

    meta(k, v)                       store id, the boot that last ran it
    channels(id, name, epoch, top)   top = highest durable seq
    msgs(ch, seq, ts, raw, key)      one row per envelope, raw = its JSON
    blocks(ch, k, t_min, t_max, stats)  per BLOCK seqs (k*BLOCK+1 .. (k+1)*BLOCK):
                                     each numeric field's min and max and their seqs
                                     (JSON [[field, min, seq, max, seq], ...]),
    blocks2(ch, k, t_min, t_max, stats)  the same per FAN blocks (SPAN2 seqs), merged from
                                     theirs, so a long bucket takes few summaries
                                     so a long range is downsampled without reading it
    cols(ch, k, data)                per finished block: its rows' ts and numeric values, packed
                                     (sqlite_cols.py), so a block cut by a bucket edge is answered
                                     without decoding its rows; blocks from before it have none
                                     (a rowid table: ~1.7 KB rows would overflow a WITHOUT ROWID
                                     table's pages and take ~3x the room)
    tombs(name, epoch)               deleted channels: the epoch their next publish starts
    runs(project, name, rec)         run records (rec = the record's JSON)

Only the writer thread writes. Readers use their own connections (one per
thread); WAL lets them read while it writes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulseboard.protocol import Envelope, PulseboardError

log = logging.getLogger("pulseboard.store")

BLOCK = 64
FAN = 16  # level-1 blocks per level-2 block
SPAN2 = BLOCK * FAN  # seqs per level-2 block
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  epoch TEXT NOT NULL, top INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS msgs(ch INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,
  raw TEXT NOT NULL, key TEXT, PRIMARY KEY(ch, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS msgs_ts ON msgs(ch, ts);
CREATE INDEX IF NOT EXISTS msgs_key ON msgs(ch, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS blocks(ch INTEGER NOT NULL, k INTEGER NOT NULL, t_min REAL NOT NULL,
  t_max REAL NOT NULL, stats TEXT NOT NULL, PRIMARY KEY(ch, k)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks2(ch INTEGER NOT NULL, k INTEGER NOT NULL, t_min REAL NOT NULL,
  t_max REAL NOT NULL, stats TEXT NOT NULL, PRIMARY KEY(ch, k)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cols(ch INTEGER NOT NULL, k INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(ch, k));
CREATE TABLE IF NOT EXISTS tombs(name TEXT PRIMARY KEY, epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(project TEXT NOT NULL, name TEXT NOT NULL, rec TEXT NOT NULL,
  PRIMARY KEY(project, name));
"""


# A row whose JSON is damaged (the file was edited, a disk fault) reads as
# NULL in SQL, so summaries and ranges skip it; in Python it is dropped (a gap).
VALID_RAW = "CASE WHEN json_valid(m.raw) THEN m.raw END"  # NULL: json_each yields no rows

# Each numeric field's min (or max) over some rows, with the seq holding it (SQLite's bare
# column rule: the other columns of an aggregate min()/max() come from the row that has it).
SUMMARY = """SELECT j.key, {}(j.value), m.seq FROM msgs m, json_each(RAW, '$.data') j
WHERE m.ch=? AND m.seq>=? AND m.seq<=? AND j.type IN ('integer', 'real') GROUP BY j.key"""


def summary_rows(c: sqlite3.Connection, agg: str, span: tuple[int, int, int]) -> list[tuple[str, Any, int]]:
    """(field, min or max, its seq) over `span`. The writer summarizes rows it just wrote, so
    the `json_valid` guard (a third more per row) runs only when a damaged row is in the block."""
    try:
        return c.execute(SUMMARY.format(agg).replace("RAW", "m.raw"), span).fetchall()
    except sqlite3.OperationalError:  # malformed JSON in a stored row: skip that row
        return c.execute(SUMMARY.format(agg).replace("RAW", VALID_RAW), span).fetchall()


class StoreError(PulseboardError):
    """The store can't be used (locked, damaged, unreadable): a one-line reason."""

    def __init__(self, detail: str) -> None:
        super().__init__("unavailable", detail)


def parse_rows(raws: list[str]) -> list[Any]:
    """Each row's JSON, parsed in one `json.loads` call (much faster than one per row); a row
    that doesn't parse on its own is None (the caller treats it as missing: a gap)."""
    if not raws:
        return []
    try:
        objs = json.loads("[" + ",".join(raws) + "]")
        if len(objs) == len(raws):
            return list(objs)
    except (ValueError, RecursionError):
        pass
    out: list[Any] = []
    for raw in raws:
        try:
            out.append(json.loads(raw))
        except (ValueError, RecursionError):
            out.append(None)
    bad = sum(o is None for o in out)
    if bad:
        log.warning("store: %d stored row(s) are not valid JSON: read as missing", bad)
    return out


def _envelope(o: Any, raw: str) -> Envelope | None:
    if not (isinstance(o, dict) and isinstance(o.get("seq"), int) and isinstance(o.get("ts"), (int, float))
            and isinstance(o.get("ch"), str) and isinstance(o.get("data"), dict)):
        return None
    return Envelope(o["ch"], o["seq"], float(o["ts"]), o["data"], raw)


def envelopes(raws: list[str]) -> list[Envelope]:
    """Stored envelopes; a damaged row is left out (readers see a gap, never an error)."""
    out = [_envelope(o, r) for o, r in zip(parse_rows(raws), raws, strict=True)]
    return [e for e in out if e is not None]


_SLOT = {name: Envelope.__dict__[name].__set__ for name in ("ch", "seq", "ts", "data", "raw")}  # (frozen: set once)
_set_data = _SLOT["data"]


class StoredEnvelope(Envelope):
    """An envelope read from the store, made from its row's columns without decoding `raw`:
    `data` is decoded on first use. A replay or a backfill only frames `raw`, so decoding
    every row (most of a 10,000-message resume) is left to the few readers that look inside."""

    __slots__ = ()

    @classmethod
    def of(cls, ch: str, seq: int, ts: float, raw: str) -> StoredEnvelope:
        env = object.__new__(cls)
        _SLOT["ch"](env, ch)
        _SLOT["seq"](env, seq)
        _SLOT["ts"](env, ts)
        _SLOT["raw"](env, raw)
        return env

    def __getattr__(self, name: str) -> Any:  # reached only while the `data` slot is empty
        if name != "data":
            raise AttributeError(name)
        data = json.loads(self.raw)["data"]  # the row was checked in SQL: an object holding an object
        _set_data(self, data)
        return data

    def __eq__(self, other: object) -> bool:  # (a dataclass compares only its own class)
        if not isinstance(other, Envelope):
            return NotImplemented
        return (self.ch, self.seq, self.ts, self.data) == (other.ch, other.seq, other.ts, other.data)

    __hash__ = None  # type: ignore[assignment]  # as Envelope's: data is a dict


# Each row's seq, ts, raw, and whether raw is an envelope (valid JSON whose `data` is an
# object), checked by SQLite without decoding it in Python.
STORED = "seq, ts, raw, CASE WHEN json_valid(raw) THEN json_type(raw, '$.data') = 'object' END"


def stored(ch: str, rows: list[tuple[int, float, str, Any]]) -> list[Envelope]:
    """Envelopes of `STORED` rows; a damaged row is left out (readers see a gap, never an error)."""
    out: list[Envelope] = [StoredEnvelope.of(ch, seq, ts, raw) for seq, ts, raw, ok in rows if ok]
    if len(out) < len(rows):
        log.warning("store: %d stored row(s) are not valid JSON: read as missing", len(rows) - len(out))
    return out


def flat(st: Any) -> list[list[Any]]:
    """A block summary as [[field, min, seq, max, seq], ...]; the first store builds wrote
    {"lo": {field: [min, seq]}, "hi": {field: [max, seq]}}."""
    if isinstance(st, list):
        return st
    return [[f, *st["lo"][f], *st["hi"][f]] for f in st["lo"]]


def merge_stats(parts: list[list[list[Any]]]) -> list[list[Any]]:
    """One summary from consecutive blocks' (in seq order: on a tie the earlier, lower seq stays)."""
    acc: dict[str, list[Any]] = {}
    for st in parts:
        for f, lv, ls, hv, hs in st:
            cur = acc.get(f)
            if cur is None:
                acc[f] = [f, lv, ls, hv, hs]
                continue
            if lv < cur[1]:
                cur[1], cur[2] = lv, ls
            if hv > cur[3]:
                cur[3], cur[4] = hv, hs
    return list(acc.values())


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(slots=True)
class Item:
    """One envelope for the writer; `new` carries (name, epoch) when it creates its channel."""

    ch_id: int
    env: Envelope
    key: str | None
    new: tuple[str, str] | None = None


@dataclass(slots=True)
class Loaded:
    store_id: str
    fresh_epochs: bool  # the machine rebooted under a running store: epochs were renewed
    channels: list[tuple[int, str, str, int, int]] = field(default_factory=list)  # id, name, epoch, top, first


class Store:
    """The file, its lock and the writer's side. Make it with `Store.open` (blocking)."""

    def __init__(self, path: Path, lock_fd: int, conn: sqlite3.Connection) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self.conn = conn  # the writer's connection

    @classmethod
    def open(cls, path: Path) -> tuple[Store, Loaded]:
        from .sqlite_files import open_private, secure_store

        path = secure_store(path)  # 0700 folder, 0600 files, no symlinks, no foreign owner
        lock_fd = open_private(path.with_name(path.name + ".lock"), create=True)
        assert lock_fd is not None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise StoreError(
                f"store {path} is in use by another pulseboard server: stop it or use --data-dir"
            ) from None
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())
        try:
            conn = connect(path)
            store = cls(path, lock_fd, conn)
            loaded = store._load()
        except sqlite3.DatabaseError as e:
            os.close(lock_fd)
            raise StoreError(f"store {path} is damaged or not a pulseboard store ({e}): move it away") from None
        return store, loaded

    def _load(self) -> Loaded:
        c = self.conn
        c.executescript(SCHEMA)
        meta = dict(c.execute("SELECT k, v FROM meta").fetchall())
        store_id = meta.get("id") or uuid.uuid4().hex
        running, now = meta.get("running", ""), boot_id()
        # Killed, the process left its commits in the WAL: nothing a client saw is lost. If the
        # machine itself went down while it ran, the last commits may be gone: new epochs.
        fresh = bool(running) and running != now
        c.execute("BEGIN")
        if fresh:
            for (ch_id,) in c.execute("SELECT id FROM channels").fetchall():
                c.execute("UPDATE channels SET epoch=? WHERE id=?", (uuid.uuid4().hex[:12], ch_id))
        c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("id", store_id), ("running", now)])
        c.execute("COMMIT")
        rows = c.execute(
            "SELECT id, name, epoch, top, (SELECT min(seq) FROM msgs WHERE ch=channels.id) FROM channels"
        ).fetchall()
        loaded = Loaded(store_id, fresh)
        loaded.channels = [(i, n, e, t, f if f is not None else t + 1) for i, n, e, t, f in rows]
        return loaded

    def delete_channel(self, c: sqlite3.Connection, ch_id: int, name: str, epoch: str, keep: int) -> None:
        """(writer thread, in a transaction) Drop a channel and its messages; remember the epoch
        its next publish starts, for the newest `keep` deleted channels."""
        c.execute("DELETE FROM msgs WHERE ch=?", (ch_id,))
        c.execute("DELETE FROM blocks WHERE ch=?", (ch_id,))
        c.execute("DELETE FROM blocks2 WHERE ch=?", (ch_id,))
        c.execute("DELETE FROM cols WHERE ch=?", (ch_id,))
        c.execute("DELETE FROM channels WHERE id=?", (ch_id,))
        c.execute("DELETE FROM tombs WHERE name=?", (name,))
        c.execute("INSERT INTO tombs(name, epoch) VALUES (?, ?)", (name, epoch))
        c.execute("DELETE FROM tombs WHERE rowid <= (SELECT max(rowid) FROM tombs) - ?", (keep,))

    def load_extra(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """(at start) Deleted channels' next epochs (oldest first) and the run records."""
        tombs = self.conn.execute("SELECT name, epoch FROM tombs ORDER BY rowid").fetchall()
        runs = self.conn.execute("SELECT project, name, rec FROM runs ORDER BY rowid").fetchall()
        return tombs, runs

    def close(self, clean: bool) -> None:
        try:
            if clean:
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('running', '')")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.close()
        finally:
            os.close(self._lock_fd)

    # --- writing (writer thread only) ---------------------------------------------------

    def write(self, items: list[Item]) -> None:
        """Write a batch in one transaction; on error nothing of it is kept."""
        c = self.conn
        tops: dict[int, int] = {}
        c.execute("BEGIN")
        try:
            new = [(i.ch_id, *i.new) for i in items if i.new is not None]
            if new:
                c.executemany("INSERT INTO channels(id, name, epoch, top) VALUES (?, ?, ?, 0)", new)
            c.executemany(
                "INSERT INTO msgs VALUES (?, ?, ?, ?, ?)",
                [(i.ch_id, i.env.seq, i.env.ts, i.env.raw, i.key) for i in items],
            )
            for i in items:
                tops[i.ch_id] = i.env.seq
            c.executemany("UPDATE channels SET top=? WHERE id=?", [(s, ch) for ch, s in tops.items()])
            done = self._summarize(items)
            if done:
                c.executemany("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)", done)
                c.executemany("INSERT OR REPLACE INTO cols VALUES (?, ?, ?)", self._columns(items, done))
                done2 = self._summarize2(done)
                if done2:
                    c.executemany("INSERT OR REPLACE INTO blocks2 VALUES (?, ?, ?, ?, ?)", done2)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                c.execute("ROLLBACK")
            raise

    def _summarize(self, items: list[Item]) -> list[tuple[int, int, float, float, str]]:
        """Summaries of the blocks this batch completed, computed by SQLite from the stored
        rows (in C, without the GIL, so the event loop keeps running)."""
        done = []
        c = self.conn
        for i in items:
            seq = i.env.seq
            if seq % BLOCK:
                continue
            k, span = seq // BLOCK - 1, (i.ch_id, seq - BLOCK + 1, seq)
            t_min, t_max = c.execute(
                "SELECT min(ts), max(ts) FROM msgs WHERE ch=? AND seq>=? AND seq<=?", span
            ).fetchone()
            lo = {f: [v, s] for f, v, s in summary_rows(c, "min", span)}
            hi = {f: [v, s] for f, v, s in summary_rows(c, "max", span)}
            # [[field, min, its seq, max, its seq], ...]: flat lists parse ~5x faster than dicts
            stats = [[f, *lo[f], *hi[f]] for f in lo]
            done.append((i.ch_id, k, t_min, t_max, json.dumps(stats, separators=(",", ":"))))
        return done

    def _columns(
        self, items: list[Item], done: list[tuple[int, int, float, float, str]]
    ) -> list[tuple[int, int, bytes]]:
        """The columns (sqlite_cols.py) of the blocks this batch completed: from the batch itself
        when it holds the whole block (no decoding), else from the stored rows."""
        from .sqlite_cols import block_rows, encode

        by_ch: dict[int, list[Item]] = {}
        for i in items:
            by_ch.setdefault(i.ch_id, []).append(i)
        out = []
        for ch_id, k, *_ in done:
            got = by_ch[ch_id]
            end = (k + 1) * BLOCK
            p = end - got[0].env.seq  # a channel's items come in rising seq order, without holes
            if BLOCK - 1 <= p < len(got) and got[p].env.seq == end and got[p - BLOCK + 1].env.seq == end - BLOCK + 1:
                rows: list[tuple[float, Any]] = [(i.env.ts, i.env.data) for i in got[p - BLOCK + 1 : p + 1]]
            else:
                rows = block_rows(self.conn, ch_id, k)
            data = encode(rows)
            if data is not None:
                out.append((ch_id, k, data))
        return out

    def _summarize2(self, done: list[tuple[int, int, float, float, str]]) -> list[tuple[int, int, float, float, str]]:
        """Level-2 summaries of the level-2 blocks whose last block is in `done`."""
        out = []
        for ch_id, k, *_ in done:
            if (k + 1) % FAN:
                continue
            k2 = (k + 1) // FAN - 1
            rows = self.conn.execute(
                "SELECT t_min, t_max, stats FROM blocks WHERE ch=? AND k>=? AND k<=? ORDER BY k", (ch_id, k2 * FAN, k)
            ).fetchall()
            if len(rows) < FAN:  # partly trimmed
                continue
            stats = merge_stats([flat(json.loads(st)) for _, _, st in rows])
            out.append((ch_id, k2, min(r[0] for r in rows), max(r[1] for r in rows),
                        json.dumps(stats, separators=(",", ":"))))
        return out

    # --- trimming (writer thread, between batches) --------------------------------------

    def used_bytes(self) -> int:
        c = self.conn
        pages = c.execute("PRAGMA page_count").fetchone()[0] - c.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(c.execute("PRAGMA page_size").fetchone()[0])

    def trim_before(self, ch_id: int, first: int) -> None:
        """Drop the channel's messages with seq < first (never leaves holes)."""
        c = self.conn
        c.execute("BEGIN")
        try:
            c.execute("DELETE FROM msgs WHERE ch=? AND seq<?", (ch_id, first))
            c.execute("DELETE FROM blocks WHERE ch=? AND (k+1)*?<?", (ch_id, BLOCK, first))
            c.execute("DELETE FROM blocks2 WHERE ch=? AND (k+1)*?<?", (ch_id, SPAN2, first))
            c.execute("DELETE FROM cols WHERE ch=? AND (k+1)*?<?", (ch_id, BLOCK, first))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                c.execute("ROLLBACK")
            raise

    def trim_many(self, keeps: dict[int, int]) -> None:
        """`trim_before` for several channels (ch_id -> first seq to keep) in one transaction."""
        c = self.conn
        c.execute("BEGIN")
        try:
            for ch_id, first in keeps.items():
                c.execute("DELETE FROM msgs WHERE ch=? AND seq<?", (ch_id, first))
                c.execute("DELETE FROM blocks WHERE ch=? AND (k+1)*?<?", (ch_id, BLOCK, first))
                c.execute("DELETE FROM blocks2 WHERE ch=? AND (k+1)*?<?", (ch_id, SPAN2, first))
                c.execute("DELETE FROM cols WHERE ch=? AND (k+1)*?<?", (ch_id, BLOCK, first))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def expired_prefix(self, ch_id: int, cutoff: float, chunk: int = 5000) -> int | None:
        """The first seq to keep when the head's messages older than `cutoff` go, looking at
        most `chunk` rows ahead (None: the head is not expired)."""
        rows = self.conn.execute(
            "SELECT seq, ts FROM msgs WHERE ch=? ORDER BY seq LIMIT ?", (ch_id, chunk)
        ).fetchall()
        if not rows or rows[0][1] >= cutoff:
            return None
        for seq, ts in rows:
            if ts >= cutoff:
                return int(seq)
        return int(rows[-1][0]) + 1

    def channel_ids(self) -> list[tuple[int, int, int]]:
        """(id, first, top) of every channel with stored messages."""
        rows = self.conn.execute(
            "SELECT id, (SELECT min(seq) FROM msgs WHERE ch=channels.id), top FROM channels"
        ).fetchall()
        return [(i, f, t) for i, f, t in rows if f is not None]


class Readers:
    """One read connection per thread (reads run in the default executor)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn` in one read transaction (a consistent snapshot)."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass


__all__ = [
    "BLOCK",
    "FAN",
    "SPAN2",
    "STORED",
    "VALID_RAW",
    "Item",
    "Loaded",
    "Readers",
    "Store",
    "StoreError",
    "StoredEnvelope",
    "boot_id",
    "envelopes",
    "flat",
    "merge_stats",
    "parse_rows",
    "stored",
]
