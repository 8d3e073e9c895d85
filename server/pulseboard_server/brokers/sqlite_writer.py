"""The store's one writer thread: group commit, then trimming between batches.

The loop appends items (`put`) to the open batch; the thread takes the whole
batch when it is free, writes it in one transaction and calls back on the loop:
`on_committed(items)` then resolves the batch's future (the publishers' answer),
or `on_failed(items, error)` and fails it with 503 (then everything numbered
after it fails too, so numbering stays gap-free, and the thread waits until the
loop has rolled the numbering back). Between batches it enforces the retention
and the byte cap, a little at a time.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import BrokerUnavailable
from .sqlite_store import Item, Store

log = logging.getLogger("pulseboard.store")

MAX_BATCH = 50_000  # items per transaction
TRIM_EVERY = 1.0  # seconds between checks of the byte cap (retention: see `_retention_every`)
CAP_SLACK = 8  # ...and the cap is checked again once 1/CAP_SLACK of it has been written since the last check
CAP_ROUNDS = 8  # trims per check at most (each drops at most half of every channel)
CAP_LOG_EVERY = 10.0  # seconds between log lines about trimming to the cap
STUCK_AFTER = 30.0  # seconds one batch or trim may take before /healthz calls the writer stuck


class Batch(asyncio.Future[None]):
    """The future every publisher of one batch awaits. A cancelled publisher must not
    cancel it for the others, so it refuses `cancel` (the publisher's task still ends
    cancelled when the batch is done); cheaper than an `asyncio.shield` per publish."""

    def cancel(self, msg: object = None) -> bool:
        return False


@dataclass(slots=True)
class Job:
    """Work for the writer thread in order with the items around it (deleting a channel after
    the messages numbered before it are written; run records): `fn(conn)` in one transaction."""

    fn: Callable[[sqlite3.Connection], Any]
    fut: asyncio.Future[Any]
    then: Callable[[], None] | None = None  # (loop) called at once when done, before anything written later


class Writer:
    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_committed: Callable[[list[Item]], None],
        on_failed: Callable[[list[Item], str], None],
        on_trimmed: Callable[[dict[int, int]], None],
        retention: float,
        max_bytes: int,
        max_count: int | None = None,
        stuck_after: float = STUCK_AFTER,
    ) -> None:
        self.store = store
        self.loop = loop
        self.on_committed = on_committed
        self.on_failed = on_failed
        self.on_trimmed = on_trimmed
        self.retention = retention
        self.max_bytes = max_bytes
        self.max_count = max_count  # an explicit --history: messages kept per channel, after every batch
        self._cond = threading.Condition(threading.Lock())
        self._items: list[Item | Job] = []
        self._jobs = 0  # Jobs in _items
        self._fut: asyncio.Future[None] | None = None
        self._stop = False
        self._resume = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulseboard-store", daemon=True)
        self._next_cap = 0.0
        self._written = 0  # message bytes written since the last check of the cap
        self._cap_logged = -CAP_LOG_EVERY
        self._cap_trims = 0
        self._next_retention = 0.0
        self._busy_since: float | None = None  # monotonic start of the write or trim under way
        self._died: str | None = None
        self.stuck_after = stuck_after
        self._inflight: tuple[list[Item], asyncio.Future[None] | None] = ([], None)  # the batch being written

    def alive(self) -> bool:
        return self._died is None and self._thread.is_alive()

    def health(self) -> str | None:
        """None while the thread runs and keeps up; else why not (for /healthz)."""
        if self._died is not None or (self._thread.ident is not None and not self._thread.is_alive()
                                      and not self._stop):
            return f"store writer stopped ({self._died or 'thread ended'})"
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > self.stuck_after:
            return f"store writer stuck for {time.monotonic() - busy:.0f} s"
        return None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._resume.set()
        self._thread.join()

    def backlog(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> asyncio.Future[None]:
        """(loop) Add `item` to the open batch; the future resolves once it is durable."""
        with self._cond:
            if self._fut is None:
                self._fut = Batch(loop=self.loop)
            self._items.append(item)
            if len(self._items) == 1:
                self._cond.notify()
            return self._fut

    def put_many(self, items: list[Item]) -> asyncio.Future[None]:
        """(loop) Add `items` to the open batch together: one future for all of them."""
        with self._cond:
            if self._fut is None:
                self._fut = Batch(loop=self.loop)
            was_empty = not self._items
            self._items.extend(items)
            if was_empty and self._items:
                self._cond.notify()
            return self._fut

    def job(
        self, fn: Callable[[sqlite3.Connection], Any], then: Callable[[], None] | None = None
    ) -> asyncio.Future[Any]:
        """(loop) Run `fn(conn)` in the writer thread, in one transaction, after every item put
        before it and before every item put after it; the future holds its result."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        with self._cond:
            self._items.append(Job(fn, fut, then))
            self._jobs += 1
            if len(self._items) == 1:
                self._cond.notify()
        return fut

    def _take(self) -> tuple[list[Item], asyncio.Future[None] | None, Job | None]:
        """The next batch: items up to MAX_BATCH or the first job, and that job when it is next."""
        with self._cond:
            queue = self._items
            cut = len(queue)
            if self._jobs:
                cut = next(i for i, x in enumerate(queue) if isinstance(x, Job))
            n = min(cut, MAX_BATCH)
            items: list[Item] = queue[:n]  # type: ignore[assignment]  # no Job before `cut`
            rest = queue[n:]
            job: Job | None = None
            if n == cut and rest:
                job = rest.pop(0)  # type: ignore[assignment]
                self._jobs -= 1
            if rest:  # the rest shares the open batch's future: it waits for both
                self._items = rest
                return items, None, job
            fut, self._items, self._fut = self._fut, [], None
            return items, fut, job

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # whatever it was, publishers must hear of it, never hang
            self._died = type(e).__name__
            log.error("store writer stopped (%s): publishes get 503 until the server restarts", self._died)
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._refuse_all)

    def _refuse_all(self) -> None:
        """(loop) The thread is gone: fail the batch it held and what waits."""
        items, fut = self._inflight
        self._fail_on_loop(items, fut, f"writer stopped ({self._died})")

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stop:
                    if not self._cond.wait(timeout=TRIM_EVERY):
                        break
                if self._stop and not self._items:
                    return
            items, fut, job = self._take()
            self._busy_since = time.monotonic()
            if items:
                self._inflight = (items, fut)
                self._write(items, fut)
                self._inflight = ([], None)
            elif fut is not None:
                self.loop.call_soon_threadsafe(self._done_on_loop, [], fut)
            if job is not None:
                self._run_job(job)
            self._housekeeping()
            self._busy_since = None

    def _run_job(self, job: Job) -> None:
        c = self.store.conn
        try:
            c.execute("BEGIN")
            try:
                result = job.fn(c)
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        except Exception as e:  # any exception fails this job (503); the writer goes on
            why = str(e) if isinstance(e, sqlite3.Error) else f"unexpected {type(e).__name__}"
            error = BrokerUnavailable(f"store write failed ({why}): try again shortly")
            self.loop.call_soon_threadsafe(_settle, job.fut, None, error)
            return
        self.loop.call_soon_threadsafe(_settle, job.fut, result, None, job.then)

    def _write(self, items: list[Item], fut: asyncio.Future[None] | None) -> None:
        try:
            self.store.write(items)
        except Exception as e:  # any exception: this batch fails (503), the thread goes on
            error = str(e) if isinstance(e, sqlite3.Error) else f"unexpected {type(e).__name__}"
            if not isinstance(e, sqlite3.Error):
                log.warning("store write failed with %s; the batch gets 503, the next one is tried",
                            type(e).__name__)
            self._resume.clear()
            self.loop.call_soon_threadsafe(self._fail_on_loop, items, fut, error)
            while not self._resume.wait(1.0):  # the loop rolls the numbering back first
                if self._stop or self.loop.is_closed():
                    return
            return
        self._written += sum(len(i.env.raw) for i in items)
        firsts = self._enforce_count(items) if self.max_count is not None else {}
        self.loop.call_soon_threadsafe(self._done_on_loop, items, fut)
        if firsts:
            self.loop.call_soon_threadsafe(self.on_trimmed, firsts)

    def _done_on_loop(self, items: list[Item], fut: asyncio.Future[None] | None) -> None:
        self.on_committed(items)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail_on_loop(self, items: list[Item], fut: asyncio.Future[None] | None, error: str) -> None:
        with self._cond:  # whatever was numbered after the failed batch fails with it
            queued, later_fut = self._items, self._fut
            self._items, self._fut, self._jobs = [], None, 0
        later = [i for i in queued if isinstance(i, Item)]
        for job in queued:
            if isinstance(job, Job):
                _settle(job.fut, None, BrokerUnavailable(f"store write failed ({error}): try again shortly"))
        self.on_failed(items + later, error)
        detail = "store is full (disk or --max-store-bytes): try again later" if "full" in error else (
            f"store write failed ({error}): try again shortly")
        for f in (fut, later_fut):
            if f is not None and not f.done():
                f.set_exception(BrokerUnavailable(detail))
                f.exception()  # retrieved here too: a batch nobody waits for stays quiet
        self._resume.set()

    # --- trimming ---------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        try:
            # by time, and by bytes written: a fast publisher can't outgrow the cap between checks
            if self.max_bytes and (now >= self._next_cap or self._written * CAP_SLACK >= self.max_bytes):
                self._next_cap = now + TRIM_EVERY
                self._written = 0
                self._enforce_cap()
            if now >= self._next_retention:
                self._next_retention = now + min(60.0, max(0.5, self.retention / 4))
                self._enforce_retention()
        except Exception as e:  # trimming waits for the next round; the writer goes on
            log.warning("store trimming failed (%s); trying again later",
                        e if isinstance(e, sqlite3.Error) else type(e).__name__)

    def _enforce_count(self, items: list[Item]) -> dict[int, int]:
        """Keep the last `max_count` messages of each channel just written (before the batch
        is answered, so a publisher never sees more than that kept)."""
        assert self.max_count is not None
        keeps: dict[int, int] = {}
        for item in items:
            keep = item.env.seq - self.max_count + 1
            if keep > 1:
                keeps[item.ch_id] = keep  # items are in seq order per channel: the last wins
        if keeps:
            try:
                self.store.trim_many(keeps)
            except sqlite3.Error as e:
                log.warning("store trimming to --history failed (%s); trying again next batch", e)
                return {}
        return keeps

    def _enforce_retention(self) -> None:
        """Drop each channel's expired head, a chunk at a time; publishes waiting go first."""
        cutoff = time.time() - self.retention
        firsts: dict[int, int] = {}
        try:
            for ch_id, _first, _top in self.store.channel_ids():
                while (keep := self.store.expired_prefix(ch_id, cutoff)) is not None:
                    self.store.trim_before(ch_id, keep)
                    firsts[ch_id] = keep
                    if self._items:  # let them through; go on right after
                        self._next_retention = 0.0
                        return
        finally:
            if firsts:
                self.loop.call_soon_threadsafe(self.on_trimmed, firsts)

    def _enforce_cap(self) -> None:
        used = start = self.store.used_bytes()
        if used <= self.max_bytes:
            return
        # Drop the oldest share of every channel until under 90% of the cap (at most half per round).
        target = 0.9 * self.max_bytes
        firsts: dict[int, int] = {}
        for _ in range(CAP_ROUNDS):
            share = min(0.5, (used - target) / used + 0.01)
            for ch_id, first, top in self.store.channel_ids():
                keep = min(top + 1, first + max(1, int((top - first + 1) * share)))
                if keep > first:
                    self.store.trim_before(ch_id, keep)
                    firsts[ch_id] = keep
            used = self.store.used_bytes()
            if used <= target:
                break
        self._cap_trims += 1
        now = time.monotonic()
        if now >= self._cap_logged + CAP_LOG_EVERY:  # one line at most every CAP_LOG_EVERY s under a flood
            log.info("store over --max-store-bytes (%d > %d): dropped the oldest messages, now %d "
                     "(%d trims since the last such line)", start, self.max_bytes, used, self._cap_trims)
            self._cap_logged, self._cap_trims = now, 0
        if firsts:
            self.loop.call_soon_threadsafe(self.on_trimmed, firsts)


def _settle(
    fut: asyncio.Future[Any], result: Any, error: BaseException | None, then: Callable[[], None] | None = None
) -> None:
    if then is not None:
        then()
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


__all__ = ["Job", "Writer"]
