"""The background sender behind `pulseboard.log()`: never blocks, never raises, never doubles.

`Sender.log` appends `(channel, data, ts)` to a bounded in-process queue and returns
(about a microsecond). A daemon thread wakes every `tick`, takes what arrived, gives
every message an idempotency key (`<run id>-<n>`) and posts it in one `POST publish`
per batch. A batch that fails for a reason that may pass (server down, restarting,
503, a lost answer) is retried, as is and with the same keys, after a growing pause
(`BACKOFF_MIN`..`BACKOFF_MAX`), so the server numbers each message once and each
channel's messages arrive in the order they were logged.

Bounds: the queue holds `max_queue` messages (default 100,000); at that point the
oldest are dropped, counted in `status().dropped` and reported once on stderr. Beside
it the sender holds at most 2 x `BATCH_MAX` messages taken from it: the batch in flight
(at most `BATCH_MAX` messages and `BATCH_BYTES` bytes) and the next one, encoded early.
A message the server refuses for what it is (bad data, forbidden channel, too large:
any 4xx but those in `RETRIED`) is counted in `rejected` with the reason in `last_error`,
reported once on stderr (the reason only, never the data) and never retried; so is a
message that can't be encoded at all (text with a lone surrogate, e.g. a file name from
`os.fsdecode` of non-UTF-8 bytes), before it is ever sent.

Tokens: a 401 (expired, replaced) keeps the batch and looks the token up again before the
next try. With `PULSEBOARD_TOKEN_FILE` the file is also checked before each request (at
most once a second) and a rewritten token is used at once, so a rotator keeps a run of
days going on short-lived tokens (tokenfile.py, docs/python.md).

What goes into each batch and what follows each answer are batching.py's (`BatchPlanner`, pure,
tested without a server); this module is the queue, the thread, HTTP and the counters, which
`status()` reads and every thread updates under `_lock`.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .batching import BACKOFF_MAX, BACKOFF_MIN, BATCH_BYTES, BATCH_MAX, RETRIED, Answer, BatchPlanner, Outage, classify
from .batching import encode as _encode
from .protocol import PulseboardError, check_channel
from .publish import coerce_data, rows
from .tokenfile import ENV as TOKEN_FILE_ENV
from .tokenfile import TokenFileError, file_token

if TYPE_CHECKING:
    from .discovery import NotConfigured

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "BATCH_BYTES", "BATCH_MAX", "RETRIED", "Sender", "SenderStatus",
           "configure", "default_sender", "flush", "log", "sender_status"]

MAX_QUEUE = 100_000
TICK = 0.05
WARN_AFTER = 10.0  # seconds unreachable before the one warning line
TIMEOUT = 15.0  # per request
TOKEN_FILE_CHECK = 1.0  # seconds between looks at PULSEBOARD_TOKEN_FILE


@dataclass(frozen=True, slots=True)
class Target:
    """Where batches go, as discovery found it."""

    netloc: str
    path: str
    https: bool


@dataclass(frozen=True, slots=True)
class SenderStatus:
    queued: int  # logged, not yet delivered (the queue plus the batches taken from it)
    sent: int  # delivered and numbered by the server
    dropped: int  # oldest messages dropped because the queue was full
    rejected: int  # refused for what they are (bad data, forbidden, too large); see last_error
    last_error: str | None
    server_reachable: bool | None  # None until the first attempt


def note(line: str) -> None:
    """One line for the person watching (a notebook shows stderr under the cell)."""
    try:
        print(f"pulseboard: {line}", file=sys.stderr, flush=True)
    except Exception:  # a closed stderr at exit must not matter
        pass


class Sender:
    """A queue and the daemon thread that delivers it. `pulseboard.log` uses one per process."""

    def __init__(self, url: str | None = None, token: str | None = None, max_queue: int = MAX_QUEUE,
                 tick: float = TICK, exit_timeout: float = 10.0, warn_after: float = WARN_AFTER) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._url_arg, self._token_arg = url, token
        self.max_queue, self.tick, self.exit_timeout, self.warn_after = max_queue, tick, exit_timeout, warn_after
        # Shared with the callers, under `_lock`: the queue and everything `status()` reads.
        self._queue: deque[tuple[str, Any, float, str | None, bool]] = deque()  # (..., data checked)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when `_outstanding` drops
        self._wake = threading.Event()
        self._outstanding = 0
        self.sent = self.dropped = self.rejected = 0
        self.last_error: str | None = None
        self.reachable: bool | None = None  # None until the first attempt
        self._said: set[str] = set()  # the one-time notes already written
        # The sender thread's own.
        self._pending: deque[dict[str, Any]] = deque()  # checked and keyed items, in order
        self._run = uuid.uuid4().hex[:16]
        self._next_key = 0
        self._planner = BatchPlanner()
        self._outage = Outage(warn_after)
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._target: Target | None = None
        self._token: str | None = None  # None: look it up (first use, or after a 401)
        self._not_configured: NotConfigured | None = None  # discovery's last word, when it found no settings
        self._file_checked = 0.0  # when PULSEBOARD_TOKEN_FILE was last looked at
        _live.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its keys are the parent's; start afresh."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._queue.clear()
        self._pending.clear()
        self._planner.forget()
        self._outstanding = 0
        self._run, self._next_key = uuid.uuid4().hex[:16], 0
        self._thread, self._conn = None, None

    def _once(self, what: str) -> bool:
        """True the first time `what` is to be said (under `_lock`)."""
        if what in self._said:
            return False
        self._said.add(what)
        return True

    # --- the caller's side: cheap, never raises ------------------------------------------

    def log(self, channel: str, data: Any, step: Any = None, ts: float | None = None, key: str | None = None) -> None:
        """Queue one message (a dict), or one per row (a list of dicts, a DataFrame).

        `key`: the message's idempotency key (one dict only), for a caller that resends the same
        message after its own restart (the TensorBoard watcher: file and offset); by default the
        sender makes one that holds for this process's retries."""
        when = time.time() if ts is None else ts
        try:
            if type(data) is dict:
                self._put(channel, {**data, "step": step} if step is not None else dict(data), when, key)
            else:
                for row in rows(data):
                    self._put(channel, row if step is None else {**row, "step": step}, when, None)
        except Exception as e:  # never an exception in a training loop
            self._reject(f"log({channel!r}, ...): {e}")

    def log_checked(self, channel: str, data: dict[str, Any], ts: float, key: str) -> None:
        """Queue one message whose `data` is already what `coerce_data` returns: str keys that
        UTF-8 can carry, values that are finite floats, ints, or None. The caller keeps it
        unchanged from here on. For a producer of many plain messages (the TensorBoard watcher,
        whose tags the protobuf runtime has checked as UTF-8): checking each field again was
        a fifth of its CPU."""
        self._put(channel, data, ts, key, True)

    def _put(self, channel: str, data: Any, ts: float, key: str | None, checked: bool = False) -> None:
        first_drop = False
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.dropped += 1
                self._outstanding -= 1
                first_drop = self._once("drop")
            self._queue.append((channel, data, ts, key, checked))
            self._outstanding += 1
        if self._thread is None:
            self._start()
        if first_drop:
            note(f"log queue full ({self.max_queue} messages): dropping the oldest; "
                 "see pulseboard.sender_status() for the count")

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="pulseboard-sender", daemon=True)
            self._thread.start()
        atexit.register(self._at_exit)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything logged so far is delivered (or refused); False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.5))
        return True

    def status(self) -> SenderStatus:
        with self._lock:
            return SenderStatus(self._outstanding, self.sent, self.dropped, self.rejected,
                                self.last_error, self.reachable)

    def _at_exit(self) -> None:
        st = self.status()
        if st.queued and self._not_configured is not None:  # no URL or token: waiting can't help
            note(f"{st.queued} logged messages not delivered: {st.last_error}")
        elif st.queued and not self.flush(self.exit_timeout):
            st = self.status()
            note(f"{st.queued} logged messages not delivered at exit "
                 f"({st.last_error or 'server unreachable'})")

    # --- the sender thread: I/O only; what to send and what next is BatchPlanner's ---------

    def _loop(self) -> None:
        while True:
            if not self._pending:
                if len(self._queue) < self._planner.fit():  # a full batch goes at once, the rest once a tick
                    self._wake.wait(self.tick)
                    self._wake.clear()
                self._take()
                if not self._pending:
                    continue
            try:
                wait = self._send_batch()
            except Exception as e:  # a bug here must not end delivery silently
                self._failed(f"sender error: {type(e).__name__}")  # not repr(e): it may hold the data
                wait = self._planner.pause()
            if wait:
                time.sleep(wait)

    def _take(self) -> None:
        """Move queued messages into `_pending` (up to two batches' worth), checked and keyed.
        A batch is as many as fit in one body (`fit`): taking more only delays the first post."""
        with self._lock:
            n = min(len(self._queue), 2 * self._planner.fit() - len(self._pending))
            taken = [self._queue.popleft() for _ in range(n)]
        last_ch: object = None  # the channel checked last (a loop logs to a few channels, one after another)
        for ch, data, ts, key, checked in taken:
            try:
                if key is None:
                    key = f"{self._run}-{self._next_key}"
                    self._next_key += 1
                if ch is not last_ch:
                    last_ch = check_channel(ch)
                item: dict[str, Any] = {"ch": ch, "data": data if checked else coerce_data(data), "ts": ts, "key": key}
                self._pending.append(item)
            except (PulseboardError, ValueError, TypeError) as e:
                self._reject(f"channel {ch!r}: {getattr(e, 'detail', e)}")
                self._settled(1)

    def _prepare_next(self, n: int) -> None:
        """While the server works on the first `n` pending items: take and encode what follows."""
        self._planner.forget()
        if len(self._queue) >= self._planner.fit():  # like the loop: a full batch at once, the rest on the tick
            self._take()
        self._planner.prepare(self._pending, n)

    def _send_batch(self) -> float:
        """One attempt at the head of the pending batch; the pause before the next (0: at once)."""
        try:
            batch = self._planner.next_batch(self._pending)
        except ValueError:  # something coerce_data let through that JSON or UTF-8 can't carry
            self._drop_unencodable()
            self._planner.went_on()
            return 0.0
        n = batch.n
        try:
            status, answer = self._post(batch.body, n)
        except (OSError, http.client.HTTPException, PulseboardError) as e:
            step = self._planner.after(Answer.TIMED_OUT if isinstance(e, TimeoutError) else Answer.UNREACHABLE, n)
            self._close()
            self._failed(getattr(e, "detail", None) or f"cannot reach the server: {e!r}", reached=False)
            return step.wait
        step = self._planner.after(classify(status), n)
        if step.delivered:
            self._delivered(step.delivered)
        elif step.refused:
            code, detail = _error_of(answer)
            ch = self._pending.popleft()["ch"]
            self._reject(f"server refused a message on {ch!r} ({status} {code}): {detail}")
            self._settled(1)
        elif step.failed:
            code, detail = _error_of(answer)
            error = f"server answered {status} {code}: {detail}"
            if step.reconnect:
                self._close()
            if step.relogin:  # expired or replaced token: keep the batch, look the token up again
                self._token = None
                path = os.environ.get(TOKEN_FILE_ENV) if self._token_arg is None else None
                if path:
                    error += f"; waiting for a new token in {TOKEN_FILE_ENV} {path}"
            # A token refused before anything got through is most often the wrong token (a typo, a
            # token for another server): say so now. One refused later has most often expired, and
            # a renewed token file ends that quietly.
            self._failed(error, reached=bool(step.reached), at_once=bool(step.relogin) and self.sent == 0)
        return step.wait

    def _drop_unencodable(self) -> None:
        """Refuse every pending message that can't be encoded on its own; keep the rest in order."""
        keep: deque[dict[str, Any]] = deque()
        for item in self._pending:
            try:
                _encode(item)
            except ValueError as e:
                self._reject(f"a message on {item['ch']!r} can't be encoded ({type(e).__name__})")
                self._settled(1)
                continue
            keep.append(item)
        self._pending = keep
        self._planner.forget()

    def _post(self, body: bytes, n: int) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = self._connect()
        self._check_token_file()
        assert self._target is not None
        self._conn.request("POST", self._target.path, body, {
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        self._prepare_next(n)
        resp = self._conn.getresponse()
        answer = resp.read()
        if resp.will_close:
            self._close()
        return resp.status, answer

    def _connect(self) -> http.client.HTTPConnection:
        if self._token is None or self._target is None:
            from .discovery import DiscoveryError, NotConfigured, discover_for_kernel

            try:
                url, token = discover_for_kernel(self._url_arg, self._token_arg)
            except NotConfigured as e:  # missing settings, as opposed to a hub that is away
                with self._lock:
                    first = self._once("not configured")
                self._not_configured = e
                if first:  # said at once, not after WARN_AFTER: waiting will not make a setting appear
                    note(f"log() has nowhere to send: {e.detail}. Messages wait in the queue "
                         f"(up to {self.max_queue}) until then.")
                raise
            except DiscoveryError:  # a Hub or a token exchange that is away: it may come back
                self._not_configured = None
                raise
            self._not_configured = None
            parts = urlsplit(url.rstrip("/"))
            self._target = Target(parts.netloc, parts.path + "/publish", parts.scheme == "https")
            self._token = token
        cls = http.client.HTTPSConnection if self._target.https else http.client.HTTPConnection
        return cls(self._target.netloc, timeout=TIMEOUT)

    def _check_token_file(self) -> None:
        """Pick up a rotated token before the old one expires (not only after a 401)."""
        now = time.monotonic()
        if self._token_arg is not None or now - self._file_checked < TOKEN_FILE_CHECK:
            return
        self._file_checked = now
        try:
            token = file_token(os.environ)
        except TokenFileError:
            return  # a rotator between writes, or a typo: the 401 path says which
        if token:
            self._token = token

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _delivered(self, n: int) -> None:
        for _ in range(n):
            self._pending.popleft()
        with self._lock:
            self.sent += n
            self.reachable = True
            waiting = self._outstanding - n
        if self._outage.delivered():  # said before `flush()` can return
            note(f"server reachable again; delivering {waiting} queued messages")
        self._settled(n)

    def _settled(self, n: int) -> None:
        with self._idle:
            self._outstanding -= n
            self._idle.notify_all()

    def _failed(self, error: str, reached: bool = False, at_once: bool = False) -> None:
        with self._lock:
            self.last_error = error
            self.reachable = reached
            waiting = self._outstanding
        if self._outage.failed(time.monotonic(), at_once):
            since = "" if at_once else f" for {self.warn_after:g} s"
            note(f"nothing delivered{since} ({error}); log() keeps queueing and retrying "
                 f"({waiting} waiting, up to {self.max_queue})")

    def _reject(self, error: str) -> None:
        with self._lock:
            first = self.rejected == 0
            self.rejected += 1
            self.last_error = error
        if first:
            note(f"message not logged: {error} (further ones are counted in sender_status())")


_live: weakref.WeakSet[Sender] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sender in list(_live):
        sender._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _error_of(answer: bytes) -> tuple[str, str]:
    try:
        err = json.loads(answer)
        return str(err.get("error", "error")), str(err.get("detail", ""))
    except (ValueError, AttributeError):
        return "error", answer[:200].decode(errors="replace")


_default: Sender | None = None
_default_lock = threading.Lock()


def default_sender() -> Sender:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                size = os.environ.get("PULSEBOARD_LOG_QUEUE", "")
                _default = Sender(max_queue=int(size) if size.isdigit() and int(size) > 0 else MAX_QUEUE)
    return _default


def configure(url: str | None = None, token: str | None = None, max_queue: int = MAX_QUEUE) -> None:
    """Point `log()` at another server or give it another queue size (flushes the old sender first)."""
    global _default
    with _default_lock:
        old, _default = _default, Sender(url, token, max_queue)
    if old is not None:
        old.flush()


def log(channel: str, data: Mapping[str, Any] | Any, step: Any = None) -> None:
    """Queue `data` for `channel` and return at once; a background thread delivers it.

    `data` is a dict of fields, or a list of dicts / a pandas DataFrame (one message per
    row, in order). `step`, when given, becomes the field `step`. Never raises.
    """
    (_default or default_sender()).log(channel, data, step)


def flush(timeout: float = 10.0) -> bool:
    """Wait until everything logged so far is delivered; False if `timeout` passed first."""
    return _default.flush(timeout) if _default is not None else True


def sender_status() -> SenderStatus:
    """Queued, sent, dropped and rejected counts, the last error, and whether the server answers."""
    return default_sender().status()
