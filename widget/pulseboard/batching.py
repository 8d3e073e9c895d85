"""The sender's policies, with no sockets, threads or clocks of their own (sender.py is the I/O).

`BatchPlanner` says what goes into the next `POST publish` (how many of the pending messages,
encoded) and what to do after each answer; `classify` names an answer; `Outage` says when
to tell the person watching that nothing gets through. Each is driven by plain values, so
tests/log/test_batching.py checks every rule without a server.

The rules, as sender.py's docstring states them for users:
- a batch holds at most `batch_max` messages and `batch_bytes` bytes (one message bigger
  than that goes alone);
- delivered: drop the batch, double the message cap again, go on at once;
- refused for its content (a 4xx but those in `RETRIED`): halve the batch until the one
  message at fault is alone, refuse it, go on with the full cap;
- anything else (no answer, 401, 5xx, 429, ...): keep the batch as is, same keys, and wait a
  growing pause; a request that timed out halves the cap (a slow server: ask less of it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .protocol import dumps

BATCH_MAX = 5_000
BATCH_BYTES = 512 * 1024  # well under the server's default --max-message-size (1 MiB)
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0

# 4xx answers that say nothing about the content, so the batch is retried as is: an expired
# or replaced token (401), a wrong URL or a proxy in the way (404, 407), a slow upload (408),
# too early or too fast (425, 429). Every other 4xx refuses the content, which can never pass.
RETRIED = frozenset({401, 404, 407, 408, 425, 429})
# Answers from a proxy in front of a server that is away: the server itself was not reached.
GATEWAY = frozenset({502, 503, 504})


def encode(items: Any) -> bytes:
    """A batch (or one item) as sent; ValueError for what JSON or UTF-8 can't carry."""
    return dumps(items).encode()  # the wire's one encoder: made once, most of the cost of a batch


class Answer(Enum):
    """What one attempt at a batch came to."""

    DELIVERED = "delivered"  # 200: every message numbered
    REFUSED = "refused"  # a 4xx about the content: it can never pass
    UNAUTHORIZED = "unauthorized"  # 401: the token expired or was replaced
    RETRY = "retry"  # any other answer: the server was reached, the batch may pass later
    GATEWAY = "gateway"  # 502/503/504: a proxy answered, the server is away
    UNREACHABLE = "unreachable"  # no answer at all (refused connection, reset, lost answer)
    TIMED_OUT = "timed out"  # no answer within the request timeout


def classify(status: int) -> Answer:
    """The `Answer` an HTTP status stands for."""
    if status == 200:
        return Answer.DELIVERED
    if status == 401:
        return Answer.UNAUTHORIZED
    if 400 <= status < 500 and status not in RETRIED:
        return Answer.REFUSED
    if status in GATEWAY:
        return Answer.GATEWAY
    return Answer.RETRY


@dataclass(frozen=True, slots=True)
class Batch:
    """The first `n` pending messages, encoded as one request body."""

    n: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Step:
    """What the sender does after an answer."""

    failed: bool = False  # the batch stays pending for another attempt after `wait`
    delivered: int = 0  # the first `delivered` pending messages were numbered: drop, count as sent
    refused: int = 0  # the first pending message can never pass: drop it, count it as rejected
    wait: float = 0.0  # seconds before the next attempt (0: at once)
    reached: bool | None = None  # whether the server itself answered (None: nothing to say)
    reconnect: bool = False  # close the connection before the next attempt
    relogin: bool = False  # look the token up again before the next attempt


# Jitter draws from a generator of our own, never the `random` module's: a training run that
# seeds `random` for a reproducible result gets the same numbers whatever the sender does.
_rng = random.Random()


def _jitter() -> float:
    return _rng.uniform(0.8, 1.2)  # senders that failed together don't retry in step


class BatchPlanner:
    """How much to send next and what to do after each answer: the message cap, the bytes per
    message last seen, the current pause, and the next batch encoded early."""

    def __init__(self, batch_max: int = BATCH_MAX, batch_bytes: int = BATCH_BYTES,
                 backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX),
                 jitter: Callable[[], float] = _jitter) -> None:
        self.batch_max, self.batch_bytes = batch_max, batch_bytes
        self.backoff_min, self.backoff_max = backoff
        self.jitter = jitter
        self.cap = batch_max  # halved by refusals, timeouts and oversize bodies; doubled on delivery
        self.per_item = 0.0  # bytes per message in the batch encoded last
        self.backoff = self.backoff_min
        self._ready: tuple[object, int, bytes] | None = None  # (first item, n, body) encoded early

    def fit(self) -> int:
        """How many messages fit in `batch_bytes`, by the size of those encoded last (wide
        messages of a hundred fields fill it long before `batch_max`: asking for more than
        fit meant encoding each batch several times over)."""
        if not self.per_item:
            return self.batch_max
        return max(1, min(self.batch_max, int(self.batch_bytes * 0.9 / self.per_item)))

    def next_batch(self, pending: Sequence[Any]) -> Batch:
        """The head of `pending` (not empty), encoded: at most `cap` messages and (unless one
        is bigger on its own) `batch_bytes` bytes. ValueError: some message can't be encoded."""
        ready = self._ready
        if ready is not None and ready[0] is pending[0] and ready[1] <= self.cap:
            return Batch(ready[1], ready[2])
        while True:
            n = min(self.cap, self.fit(), len(pending))
            body = encode([pending[i] for i in range(n)])
            self.per_item = len(body) / n
            if len(body) <= self.batch_bytes or n == 1:
                return Batch(n, body)
            self.cap = max(1, n // 2)

    def prepare(self, pending: Sequence[Any], start: int) -> None:
        """Encode the batch after the first `start` messages (while the server works on those)."""
        self._ready = None
        m = min(self.cap, self.fit(), len(pending) - start)
        if m > 0:
            body = encode([pending[i] for i in range(start, start + m)])
            self.per_item = len(body) / m
            if len(body) <= self.batch_bytes:
                self._ready = (pending[start], m, body)

    def forget(self) -> None:
        """Drop the batch encoded early (the pending messages changed under it)."""
        self._ready = None

    def went_on(self) -> None:
        """An attempt that needs no pause: the next failure starts from the shortest one."""
        self.backoff = self.backoff_min

    def pause(self) -> float:
        """A failed attempt: the pause before the next one (each twice the last, up to the max)."""
        wait = self.backoff * self.jitter()
        self.backoff = min(self.backoff_max, self.backoff * 2)
        return wait

    def after(self, answer: Answer, n: int) -> Step:
        """The step after `answer` to a batch of the first `n` pending messages."""
        if answer is Answer.DELIVERED:
            self.cap = min(self.batch_max, self.cap * 2)
            self.went_on()
            return Step(delivered=n, reached=True)
        if answer is Answer.REFUSED:
            self.went_on()
            if n > 1:  # isolate the message at fault: halve until it is alone
                self.cap = max(1, n // 2)
                return Step()
            self.cap = self.batch_max
            return Step(refused=1)
        if answer is Answer.TIMED_OUT:  # a slow server: ask less of it next time
            self.cap = max(1, n // 2)
        no_answer = answer in (Answer.UNREACHABLE, Answer.TIMED_OUT)
        return Step(failed=True, wait=self.pause(), reached=answer in (Answer.RETRY, Answer.UNAUTHORIZED),
                    reconnect=no_answer or answer is Answer.UNAUTHORIZED,
                    relogin=answer is Answer.UNAUTHORIZED)


class Outage:
    """Since when nothing got through, and whether the person watching was told."""

    def __init__(self, warn_after: float) -> None:
        self.warn_after = warn_after
        self.since: float | None = None
        self.warned = False

    def failed(self, now: float, at_once: bool = False) -> bool:
        """A failed attempt at `now` (monotonic seconds); True once, when it is time to say so:
        after `warn_after`, or on this failure if `at_once` (waiting is unlikely to help)."""
        if self.since is None:
            self.since = now
        if not self.warned and (at_once or now - self.since >= self.warn_after):
            self.warned = True
            return True
        return False

    def delivered(self) -> bool:
        """Something got through; True when an outage had been reported (say it is over)."""
        warned = self.warned
        self.since, self.warned = None, False
        return warned
