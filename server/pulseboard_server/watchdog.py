"""A watchdog for the event loop: says so, loudly, when one callback holds the loop.

Off unless `--loop-watchdog S` (or PULSEBOARD_LOOP_WATCHDOG=S) is given; the test servers
turn it on, so any request that blocks the loop fails the test that sent it. A task on the
loop beats every S/4 seconds; a thread checks the beat. A stall is reported once, as one
WARNING line starting with `STALL_MARK`, when the loop has not beaten for S seconds while
its thread spent S seconds of CPU in that time (work that did not yield, which is a stall on
any machine; a loop merely kept waiting by other processes on a loaded one, as in a test run
with parallel workers, spends next to none), or for `HARD_FACTOR` x S seconds whatever the
cause (a blocking call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

log = logging.getLogger("pulseboard.watchdog")

STALL_MARK = "event loop stalled"
HARD_FACTOR = 25  # 200 ms -> 5 s without a beat counts whatever the CPU did


class LoopWatchdog:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._beat = time.monotonic()
        self._beat_cpu = 0.0
        self._clock: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pulseboard-watchdog", daemon=True)
        self.stalls = 0

    def start(self) -> None:
        """(loop) Start beating on the running loop and watching from a thread."""
        self._clock = time.pthread_getcpuclockid(threading.get_ident())
        self._beat, self._beat_cpu = time.monotonic(), self._cpu()
        self._task = asyncio.get_running_loop().create_task(self._beats())
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _cpu(self) -> float:
        assert self._clock is not None
        return time.clock_gettime(self._clock)

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.limit / 4)
            self._beat, self._beat_cpu = time.monotonic(), self._cpu()

    def _watch(self) -> None:
        reported = -1.0
        while not self._stop.wait(self.limit / 4):
            beat, beat_cpu = self._beat, self._beat_cpu
            lag = time.monotonic() - beat - self.limit / 4  # the beat's own sleep is not lag
            if beat == reported or lag < self.limit:
                continue
            busy = self._cpu() - beat_cpu
            if busy >= self.limit or lag >= HARD_FACTOR * self.limit:
                reported = beat
                self.stalls += 1
                log.warning("%s for %.0f ms so far (its thread busy %.0f ms of it; limit %.0f ms)",
                            STALL_MARK, lag * 1000, busy * 1000, self.limit * 1000)
