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

from .base import BrokerUnavailable
from .sqlite_store import Item, Store

log = logging.getLogger("pulseboard.store")

MAX_BATCH = 50_000  # items per transaction
TRIM_EVERY = 1.0  # seconds between checks of the byte cap (retention: see `_retention_every`)


class Batch(asyncio.Future[None]):
    """The future every publisher of one batch awaits. A cancelled publisher must not
    cancel it for the others, so it refuses `cancel` (the publisher's task still ends
    cancelled when the batch is done); cheaper than an `asyncio.shield` per publish."""

    def cancel(self, msg: object = None) -> bool:
        return False


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
    ) -> None:
        self.store = store
        self.loop = loop
        self.on_committed = on_committed
        self.on_failed = on_failed
        self.on_trimmed = on_trimmed
        self.retention = retention
        self.max_bytes = max_bytes
        self._cond = threading.Condition(threading.Lock())
        self._items: list[Item] = []
        self._fut: asyncio.Future[None] | None = None
        self._stop = False
        self._resume = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulseboard-store", daemon=True)
        self._next_cap = 0.0
        self._next_retention = 0.0

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

    def _take(self) -> tuple[list[Item], asyncio.Future[None] | None]:
        with self._cond:
            if len(self._items) <= MAX_BATCH:
                items, fut = self._items, self._fut
                self._items, self._fut = [], None
                return items, fut
            items = self._items[:MAX_BATCH]  # the rest shares the same future: it waits for both
            self._items = self._items[MAX_BATCH:]
            return items, None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stop:
                    if not self._cond.wait(timeout=TRIM_EVERY):
                        break
                if self._stop and not self._items:
                    return
            items, fut = self._take()
            if items:
                self._write(items, fut)
            self._housekeeping()

    def _write(self, items: list[Item], fut: asyncio.Future[None] | None) -> None:
        try:
            self.store.write(items)
        except sqlite3.Error as e:
            self._resume.clear()
            self.loop.call_soon_threadsafe(self._fail_on_loop, items, fut, str(e))
            self._resume.wait()  # the loop rolls the numbering back first
            return
        self.loop.call_soon_threadsafe(self._done_on_loop, items, fut)

    def _done_on_loop(self, items: list[Item], fut: asyncio.Future[None] | None) -> None:
        self.on_committed(items)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail_on_loop(self, items: list[Item], fut: asyncio.Future[None] | None, error: str) -> None:
        with self._cond:  # whatever was numbered after the failed batch fails with it
            later, later_fut = self._items, self._fut
            self._items, self._fut = [], None
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
            if self.max_bytes and now >= self._next_cap:
                self._next_cap = now + TRIM_EVERY
                self._enforce_cap()
            if now >= self._next_retention:
                self._next_retention = now + min(60.0, max(0.5, self.retention / 4))
                self._enforce_retention()
        except sqlite3.Error as e:
            log.warning("store trimming failed (%s); trying again later", e)

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
        used = self.store.used_bytes()
        if used <= self.max_bytes:
            return
        # Drop the oldest share of every channel, enough to get under 90% of the cap.
        share = min(0.5, (used - 0.9 * self.max_bytes) / used + 0.01)
        firsts: dict[int, int] = {}
        for ch_id, first, top in self.store.channel_ids():
            keep = first + max(1, int((top - first + 1) * share))
            self.store.trim_before(ch_id, min(keep, top + 1))
            firsts[ch_id] = min(keep, top + 1)
        log.info("store over --max-store-bytes (%d > %d): dropped the oldest %.0f%%", used, self.max_bytes,
                 share * 100)
        self.loop.call_soon_threadsafe(self.on_trimmed, firsts)


__all__ = ["Writer"]
