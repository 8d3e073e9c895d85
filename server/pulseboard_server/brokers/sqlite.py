"""The embedded durable store (`sqlite://`, the default broker).

Publishing numbers a message on the event loop and hands it to the one writer
thread, which writes everything handed to it since its last commit in one
transaction (group commit: under load, one commit per tick of work). Only
after that commit is the message fanned out and its publish answered, so no
client, subscriber or publisher, ever sees a seq that a crash could take back:
`kill -9` loses at most the batch being written, which nobody saw, and after a
restart numbering continues from the last durable seq in the same epoch. If the
machine itself went down under a running store (WAL with synchronous=NORMAL
may then lose the last commits), every channel gets a new epoch.

URLs: `sqlite://` (the file `pulseboard.db` in the data dir) or `sqlite:///PATH.db`.
Reads never create channels; a channel that does not exist yet answers with the
epoch its first publish will give it (`pending_epoch`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pulseboard.protocol import (
    TOO_LARGE,
    Backfill,
    Envelope,
    Live,
    PulseboardError,
    Start,
    envelope_head,
    envelope_tail,
)

from ..replay import plan_replay
from .base import (
    MAX_TOMBSTONES,
    BrokerUnavailable,
    ChannelInfo,
    HeldRuns,
    LocalClaims,
    LocalRuns,
    OnMessage,
    OnReset,
    PublishItem,
    Replay,
    Tombstones,
    history_cap,
    new_epoch,
)
from .memory import pending_epoch
from .sqlite_range import read_range
from .sqlite_store import STORED, Item, Readers, Store, envelopes, stored
from .sqlite_writer import Writer
from .units import default_data_dir

log = logging.getLogger("pulseboard.store")

MAX_REPLAY = 100_000  # messages one (re)subscription replays at most (more missing: recovered false)
MAX_PENDING = 200_000  # messages numbered but not yet written before publishes get 503 (+ one publish_many batch)
ENCODE_ON_LOOP = 200  # messages of one publish_many encoded on the event loop; more on a worker thread


@dataclass(slots=True)
class _Chan:
    id: int
    epoch: str
    top: int  # numbered
    durable: int  # written (and so fanned out)
    first: int  # oldest kept


def store_path(url: str, data_dir: str | None) -> Path:
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if path:
        return Path(path)
    return Path(data_dir or default_data_dir()) / "pulseboard.db"


class SqliteBroker(HeldRuns):
    def __init__(
        self,
        url: str = "sqlite://",
        history: int | None = None,  # None: no count limit (explicit --history caps each channel)
        max_channels: int = 100_000,
        data_dir: str | None = None,
        retention: float = 30 * 86400,
        max_store_bytes: int = 0,
        **_options: Any,
    ) -> None:
        self.url = url
        self.path = store_path(url, data_dir)
        self._history = history
        self._max_channels = max_channels
        self._retention = retention
        self._max_bytes = max_store_bytes
        self._chans: dict[str, _Chan] = {}
        self._by_id: dict[int, str] = {}
        self._next_id = 1
        self._subscribed: set[str] = set()
        self._claims = LocalClaims()
        self._keys: dict[tuple[int, str], tuple[Envelope, asyncio.Future[None] | None]] = {}
        self._on_message: OnMessage | None = None
        self._store: Store | None = None
        self._readers: Readers | None = None
        self._writer: Writer | None = None
        self._salt = ""
        self._failing: str | None = None
        self._on_reset: OnReset | None = None
        self._tombs = Tombstones()
        self._runs = LocalRuns()  # the `runs` table, held here too: reads never touch the disk

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None:
        store, loaded = await asyncio.to_thread(Store.open, self.path)
        self._store, self._salt = store, loaded.store_id
        self.path = store.path  # resolved: readers open the very file the writer checked
        if loaded.fresh_epochs:
            log.warning("store %s: the machine restarted while it ran; every channel starts a new epoch", self.path)
        for ch_id, name, epoch, top, first in loaded.channels:
            self._chans[name] = _Chan(ch_id, epoch, top, top, first)
            self._by_id[ch_id] = name
            self._next_id = max(self._next_id, ch_id + 1)
        self._readers = Readers(self.path)
        loop = asyncio.get_running_loop()
        self._writer = Writer(store, loop, self._committed, self._failed, self._trimmed,
                              retention=self._retention, max_bytes=self._max_bytes, max_count=self._history)
        self._writer.start()
        self._on_message, self._on_reset = on_message, on_reset
        tombs, runs = await asyncio.to_thread(store.load_extra)
        for name, epoch in tombs:
            if name not in self._chans:
                self._tombs.bury(name, epoch)
        for project, name, rec in runs:
            self._runs.put(project, name, json.loads(rec))  # (in the order they first came)
        log.info("store %s: %d channels", self.path, len(self._chans))

    async def close(self) -> None:
        self._on_message = None
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if self._readers is not None:
            self._readers.close()
        if self._store is not None:
            self._store.close(clean=True)
            self._store = None

    def status(self) -> str:
        """"ok", or why not: a failing store, a stopped or stuck writer thread."""
        if self._writer is None:
            return "degraded"
        return self._writer.health() or ("degraded" if self._failing is not None else "ok")

    # --- publishing -----------------------------------------------------------------

    async def publish(self, ch: str, data: dict[str, Any], ts: float, key: str | None = None) -> Envelope:
        writer = self._ready()
        env, fut, item = self._number(writer, ch, data, ts, key, envelope_head(ch), envelope_tail(ts, data))
        if item is not None:
            fut = writer.put(item)
            if key is not None:
                self._keys[(item.ch_id, key)] = (env, fut)
        if fut is not None:
            await fut
        return env

    async def publish_many(self, items: list[PublishItem]) -> list[Envelope]:
        """Number `items` together and wait for the ONE commit that keeps them all."""
        self._ready()
        # Encoding every envelope (all but its seq) is most of the CPU of a batch: a big one is
        # encoded on a worker thread, so the loop only joins each seq in (other clients' frames
        # don't wait for a 1 MiB body). Nothing is numbered yet: an error here changes nothing.
        if len(items) > ENCODE_ON_LOOP:
            tails = await asyncio.to_thread(_tails, items)
        else:
            tails = _tails(items)
        writer = self._ready()
        if writer.backlog() > MAX_PENDING:  # so the backlog stays under MAX_PENDING + one batch
            raise BrokerUnavailable("store is behind: try again shortly")
        out: list[Envelope] = []
        new: list[Item] = []
        waits: list[asyncio.Future[None]] = []
        fresh: list[tuple[int, str, Envelope]] = []
        heads: dict[str, str] = {}
        stored = self._stored_keys(items)
        try:
            for (ch, data, ts, key), tail in zip(items, tails, strict=True):
                head = heads.get(ch)
                if head is None:
                    head = heads[ch] = envelope_head(ch)
                chan = self._chans.get(ch)
                if chan is not None:  # the usual message: `_number` in line (its checks are for new channels)
                    if key is not None:
                        done = self._known_key(chan, key, stored)
                        if done is not None:
                            out.append(done[0])
                            if done[1] is not None:
                                waits.append(done[1])
                            continue
                    chan.top = seq = chan.top + 1
                    env = Envelope(ch, seq, ts, data, head + str(seq) + tail)
                    out.append(env)
                    new.append(Item(chan.id, env, key))
                    if key is not None:  # a repeat later in this batch answers this envelope
                        self._keys[(chan.id, key)] = (env, None)
                        fresh.append((chan.id, key, env))
                    continue
                env, fut, item = self._number(None, ch, data, ts, key, head, tail, stored)
                out.append(env)
                if item is not None:
                    new.append(item)
                    if key is not None:  # a repeat later in this batch answers this envelope
                        self._keys[(item.ch_id, key)] = (env, None)
                        fresh.append((item.ch_id, key, env))
                elif fut is not None:
                    waits.append(fut)
        except BaseException:  # a refusal (channel limit) or bad data: none of the batch is numbered
            self._unnumber(new, fresh)
            raise
        if new:
            fut = writer.put_many(new)
            for ch_id, key, env in fresh:
                self._keys[(ch_id, key)] = (env, fut)
            waits.append(fut)
        for w in waits:
            await w
        return out

    def _ready(self) -> Writer:
        writer = self._writer
        if writer is None:
            raise BrokerUnavailable("store not started")
        if not writer.alive():
            raise BrokerUnavailable("store writer stopped: restart the server")
        return writer

    def _number(
        self, writer: Writer | None, ch: str, data: dict[str, Any], ts: float, key: str | None,
        head: str, tail: str, stored: dict[tuple[int, str], Envelope] | None = None,
    ) -> tuple[Envelope, asyncio.Future[None] | None, Item | None]:
        """(loop, no await) Number one message: (envelope, future to await, item to write).
        A key seen before gives that message's envelope and no item. `writer`: check its
        backlog (None: the caller did, for a whole batch). `head`/`tail`: the envelope's text
        around its seq. `stored`: the batch's keys already in the store (`_stored_keys`)."""
        chan = self._chans.get(ch)
        if key is not None and chan is not None:
            done = self._known_key(chan, key, stored)
            if done is not None:
                return done[0], done[1], None
        if writer is not None and writer.backlog() > MAX_PENDING:
            raise BrokerUnavailable("store is behind: try again shortly")
        if chan is None and len(self._chans) >= self._max_channels:
            raise PulseboardError(TOO_LARGE, f"channel limit ({self._max_channels}) reached")
        env = Envelope.numbered(ch, (chan.top if chan is not None else 0) + 1, ts, data, head, tail)
        new: tuple[str, str] | None = None
        if chan is None:
            chan = self._chans[ch] = _Chan(self._next_id, self._tombs.pop(ch) or pending_epoch(self._salt, ch), 0, 0, 1)
            self._by_id[chan.id] = ch
            self._next_id += 1
            new = (ch, chan.epoch)
        chan.top += 1
        return env, None, Item(chan.id, env, key, new)

    def _unnumber(self, items: list[Item], fresh: list[tuple[int, str, Envelope]]) -> None:
        """Take back `items` numbered by a `publish_many` that failed before handing them over
        (nothing awaited in between, so they are the newest of their channels)."""
        for ch_id, key, _ in fresh:
            self._keys.pop((ch_id, key), None)
        for item in reversed(items):
            name = self._by_id.get(item.ch_id)
            chan = self._chans.get(name) if name is not None else None
            if chan is None:
                continue
            chan.top -= 1
            if item.new is not None:
                del self._chans[item.env.ch]
                del self._by_id[item.ch_id]

    def _stored_keys(self, items: list[PublishItem]) -> dict[tuple[int, str], Envelope]:
        """(loop, no await: no publish can number or commit a key in between) The stored
        messages of the batch's keys, by (channel id, key), looked up in one query per channel
        instead of one per key (`log()` keys every message)."""
        want: dict[int, list[str]] = {}
        for ch, _data, _ts, key in items:
            if key is None:
                continue
            chan = self._chans.get(ch)
            if chan is not None and (chan.id, key) not in self._keys:
                want.setdefault(chan.id, []).append(key)
        found: dict[tuple[int, str], Envelope] = {}
        if not want:
            return found
        assert self._readers is not None
        conn = self._readers.conn()
        for ch_id, keys in want.items():
            rows = conn.execute(  # INDEXED BY: see `_known_key`
                "SELECT key, raw FROM msgs INDEXED BY msgs_key WHERE ch=? AND key IN (SELECT value FROM json_each(?))",
                (ch_id, json.dumps(keys)),
            ).fetchall()
            envs = envelopes([raw for _, raw in rows])  # a damaged row: as if the key were new
            by_raw = {e.raw: e for e in envs}
            for key, raw in rows:
                env = by_raw.get(raw)
                if env is not None:
                    found[(ch_id, key)] = env
        return found

    def _known_key(
        self, chan: _Chan, key: str, stored: dict[tuple[int, str], Envelope] | None = None
    ) -> tuple[Envelope, asyncio.Future[None] | None] | None:
        pending = self._keys.get((chan.id, key))
        if pending is not None:
            return pending
        if stored is not None:  # looked up for the whole batch
            env = stored.get((chan.id, key))
            return (env, None) if env is not None else None
        assert self._readers is not None
        row = self._readers.conn().execute(
            # INDEXED BY: the planner otherwise walks the channel by its primary key (a keyed batch
            # of 5,000 took 19 s at 55k rows); the key index makes each lookup a few microseconds.
            "SELECT raw FROM msgs INDEXED BY msgs_key WHERE ch=? AND key=? LIMIT 1", (chan.id, key)
        ).fetchone()
        found = envelopes([row[0]]) if row else []  # a damaged row: as if the key were new
        return (found[0], None) if found else None

    def _committed(self, items: list[Item]) -> None:
        """Writer thread -> loop: `items` are durable; fan them out in order."""
        self._failing = None
        on_message, subscribed, keys = self._on_message, self._subscribed, self._keys
        tops: dict[str, Item] = {}
        for item in items:
            env = item.env
            tops[env.ch] = item
            if item.key is not None:
                keys.pop((item.ch_id, item.key), None)
            if on_message is not None and env.ch in subscribed:
                on_message(env)
        for ch, item in tops.items():  # each channel's last item of the batch is its durable top
            chan = self._chans.get(ch)
            if chan is not None and chan.id == item.ch_id:
                chan.durable = item.env.seq

    def _failed(self, items: list[Item], error: str) -> None:
        """Writer thread -> loop: nothing of `items` (nor anything numbered after) was kept."""
        if self._failing is None:
            log.error("store %s: writes fail (%s): publishes get 503, reads go on", self.path, error)
        self._failing = error
        for item in items:
            self._keys.pop((item.ch_id, item.key), None) if item.key is not None else None
            name = self._by_id.get(item.ch_id)
            chan = self._chans.get(name) if name is not None else None
            if chan is None or chan.id != item.ch_id:
                continue
            chan.top = chan.durable  # nobody saw the seqs above: they are issued again
            if item.new is not None and chan.durable == 0:
                del self._chans[name]  # type: ignore[arg-type]
                del self._by_id[item.ch_id]

    def _trimmed(self, firsts: dict[int, int]) -> None:
        for ch_id, first in firsts.items():
            name = self._by_id.get(ch_id)
            chan = self._chans.get(name) if name is not None else None
            if chan is not None:
                chan.first = max(chan.first, first)

    # --- reading --------------------------------------------------------------------

    def _info(self, ch: str) -> ChannelInfo:
        chan = self._chans.get(ch)
        if chan is None or (chan.durable == 0 and chan.first == 1):
            epoch = chan.epoch if chan is not None else self._tombs.get(ch) or pending_epoch(self._salt, ch)
            return ChannelInfo(ch, epoch, 0, 1)
        return ChannelInfo(ch, chan.epoch, chan.durable, min(chan.first, chan.durable + 1))

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        readers = self._readers
        if readers is None:
            raise BrokerUnavailable("store not started")
        try:
            return await asyncio.to_thread(readers.run, fn)
        except sqlite3.Error as e:
            raise BrokerUnavailable(f"store read failed ({e}): try again shortly") from None

    async def _rows(self, ch: str, query: str, args: tuple[Any, ...]) -> tuple[ChannelInfo, list[Envelope]]:
        """The channel's position and the `raw` column of `query`'s rows, from one snapshot."""
        chan = self._chans.get(ch)
        info = self._info(ch)
        if chan is None:
            return info, []

        def read(conn: sqlite3.Connection) -> tuple[int, int, list[Envelope]]:
            top = conn.execute("SELECT top FROM channels WHERE id=?", (chan.id,)).fetchone()
            first = conn.execute("SELECT min(seq) FROM msgs WHERE ch=?", (chan.id,)).fetchone()[0]
            rows = conn.execute(query, (chan.id, *args)).fetchall()
            t = int(top[0]) if top else 0
            # Made here, on the reader's thread, from the row's columns: `raw` is framed as it is
            # and decoded only if something reads `data` (a resume or a backfill never does).
            return t, int(first) if first is not None else t + 1, stored(ch, rows)

        top, first, envs = await self._read(read)
        return ChannelInfo(ch, info.epoch, top, first), envs

    async def _after(self, ch: str, seq: int, limit: int) -> tuple[ChannelInfo, list[Envelope]]:
        return await self._rows(
            ch, f"SELECT {STORED} FROM msgs WHERE ch=? AND seq>? ORDER BY seq LIMIT ?", (seq, limit)
        )

    async def _last(self, ch: str, n: int) -> tuple[ChannelInfo, list[Envelope]]:
        return await self._rows(
            ch,
            f"SELECT {STORED} FROM (SELECT seq, ts, raw FROM msgs WHERE ch=? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (n,),
        )

    async def subscribe(self, ch: str) -> None:
        self._subscribed.add(ch)

    async def unsubscribe(self, ch: str) -> None:
        self._subscribed.discard(ch)

    async def replay(self, ch: str, start: Start) -> Replay:
        if isinstance(start, Live) or ch not in self._chans:
            info = self._info(ch)
            return Replay(info, plan_replay(start, info.epoch, info.first, info.seq).recovered, [])
        if isinstance(start, Backfill):
            info, msgs = await self._last(ch, min(start.n, history_cap(self._history)))
            return Replay(info, True, msgs)
        info = self._info(ch)
        if start.epoch == info.epoch and info.seq - start.seq > MAX_REPLAY:
            info, msgs = await self._last(ch, MAX_REPLAY)
            return Replay(info, False, msgs)
        info, msgs = await self._after(ch, start.seq, MAX_REPLAY)
        plan = plan_replay(start, info.epoch, info.first, info.seq)
        if plan.after is None:
            msgs = []
        after = plan.after or 0
        # Rows come in rising seq order, each seq once: they are gapless when the last is len-1 past the first.
        recovered = plan.recovered and (not msgs or (msgs[0].seq == after + 1 and msgs[-1].seq == after + len(msgs)))
        return Replay(info, recovered, msgs)  # a damaged row left a gap: not recovered

    async def history(self, ch: str, since: int | None, limit: int) -> tuple[ChannelInfo, list[Envelope]]:
        if ch not in self._chans or self._chans[ch].durable == 0:
            return ChannelInfo(ch, "", 0, 1), []
        if since is None:
            return await self._last(ch, limit)
        return await self._after(ch, since, limit)

    async def history_range(
        self, ch: str, t0: float | None, t1: float | None, points: int
    ) -> tuple[ChannelInfo, list[Envelope], bool]:
        chan = self._chans.get(ch)
        if chan is None or chan.durable == 0:
            return ChannelInfo(ch, "", 0, 1), [], False

        def read(conn: sqlite3.Connection) -> tuple[int, int, list[Envelope], bool]:
            top = int(conn.execute("SELECT top FROM channels WHERE id=?", (chan.id,)).fetchone()[0])
            first = conn.execute("SELECT min(seq) FROM msgs WHERE ch=?", (chan.id,)).fetchone()[0]
            first = int(first) if first is not None else top + 1
            msgs, down = read_range(conn, ch, chan.id, first, t0, t1, points)
            return top, first, msgs, down

        top, first, msgs, down = await self._read(read)
        return ChannelInfo(ch, chan.epoch, top, first), msgs, down

    async def channels(self) -> list[ChannelInfo]:
        return [self._info(ch) for ch, c in sorted(self._chans.items()) if c.durable > 0]

    async def claim_once(self, key: str, ttl: float) -> bool:
        return self._claims.claim(key, ttl)

    async def delete(self, ch: str) -> bool:
        writer = self._ready()
        chan = self._chans.pop(ch, None)
        if chan is None:
            return False
        # From here a publish numbers a new channel (new id, the new epoch); the writer deletes
        # the old one after what was numbered before and before what comes after.
        del self._by_id[chan.id]
        for k in [k for k in self._keys if k[0] == chan.id]:
            del self._keys[k]
        epoch = new_epoch()
        self._tombs.bury(ch, epoch)
        store = self._store
        assert store is not None

        def told() -> None:  # on the loop, before anything the writer kept after the delete fans out
            if ch in self._subscribed and self._on_reset is not None:
                self._on_reset(ch, epoch, 0)

        await writer.job(lambda c: store.delete_channel(c, chan.id, ch, epoch, MAX_TOMBSTONES), told)
        return chan.durable > 0 or chan.top > 0

    async def run_put(self, project: str, name: str, record: dict[str, Any]) -> None:
        writer = self._ready()
        self._runs.check_room(project, name)
        raw = json.dumps(record, separators=(",", ":"))
        await writer.job(lambda c: c.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (project, name, raw)))
        self._runs.put(project, name, record)

    async def run_delete(self, project: str, name: str) -> bool:
        writer = self._ready()
        if self._runs.get(project, name) is None:
            return False
        await writer.job(lambda c: c.execute("DELETE FROM runs WHERE project=? AND name=?", (project, name)))
        return self._runs.delete(project, name)


def _tails(items: list[PublishItem]) -> list[str]:
    """Each item's envelope text after its seq (`envelope_tail`)."""
    return [envelope_tail(ts, data) for _ch, data, ts, _key in items]


__all__ = ["SqliteBroker", "store_path"]
