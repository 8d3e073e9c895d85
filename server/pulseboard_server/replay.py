"""The replay rule and the history a broker keeps: pure, synchronous, server-only.

A (re)subscribing client says where it stands (`pulseboard.protocol.Start`); `plan_replay`
decides what it must be sent, `HistoryWindow` holds one channel's recent envelopes, and
`ChannelSync` keeps one subscriber's position while a replay is fetched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pulseboard.protocol import Backfill, Envelope, Live, Start


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What to send a subscriber: replay seqs `after`+1 .. top (or `last` recent ones)."""

    recovered: bool
    after: int | None = None  # replay everything with seq > after
    last: int = 0  # or the last N messages


def plan_replay(start: Start, epoch: str, first: int, top: int) -> ReplayPlan:
    """Decide the replay for a channel whose history holds seqs `first`..`top`.

    `first` is `top + 1` when the history is empty. The caller sends the
    `subscribed` op with `recovered`, then the planned messages, then live ones.
    """
    if isinstance(start, Live):
        return ReplayPlan(recovered=True)
    if isinstance(start, Backfill):
        return ReplayPlan(recovered=True, last=start.n)
    if start.epoch != epoch or start.seq > top:
        # Another numbering: nothing the client holds lines up with ours.
        return ReplayPlan(recovered=False)
    if start.seq + 1 < first:
        return ReplayPlan(recovered=False, after=start.seq)
    return ReplayPlan(recovered=True, after=start.seq)


class HistoryWindow:
    """The last `maxlen` envelopes of one channel, with the channel's epoch; `bytes` is the
    length of their JSON text in all (what a byte cap on history counts)."""

    def __init__(self, epoch: str, maxlen: int, top: int = 0) -> None:
        if maxlen < 1:
            raise ValueError("history must keep at least one message")
        self.epoch = epoch
        self.top = top
        self.bytes = 0
        self._items: deque[Envelope] = deque(maxlen=maxlen)

    @property
    def first(self) -> int:
        return self._items[0].seq if self._items else self.top + 1

    def __len__(self) -> int:
        return len(self._items)

    def next_seq(self) -> int:
        return self.top + 1

    def append(self, env: Envelope) -> None:
        if env.seq != self.top + 1:
            raise ValueError(f"seq {env.seq} does not follow {self.top}")
        if len(self._items) == self._items.maxlen:
            self.bytes -= len(self._items[0].raw)
        self._items.append(env)
        self.bytes += len(env.raw)
        self.top = env.seq

    def drop(self, n: int, keep_bytes: int | None = None) -> int:
        """Drop up to `n` oldest envelopes, stopping once `bytes` <= `keep_bytes` (when
        given); the newest always stays. How many went (a byte cap on history)."""
        items, gone = self._items, 0
        while gone < n and len(items) > 1 and (keep_bytes is None or self.bytes > keep_bytes):
            self.bytes -= len(items.popleft().raw)
            gone += 1
        return gone

    def expire(self, cutoff: float) -> int:
        """Drop the head's envelopes whose ts is before `cutoff` (retention); how many went.
        Stops at the first newer one, so history never has holes."""
        items, n = self._items, 0
        while items and items[0].ts < cutoff:
            self.bytes -= len(items.popleft().raw)
            n += 1
        return n

    def after(self, seq: int, limit: int | None = None) -> list[Envelope]:
        """Envelopes with seq > `seq`, oldest first, at most `limit` of them."""
        start = max(seq + 1, self.first) - self.first
        stop = len(self._items) if limit is None else min(len(self._items), start + limit)
        return [self._items[i] for i in range(start, stop)] if start < stop else []

    def last(self, n: int) -> list[Envelope]:
        n = min(n, len(self._items))
        return [self._items[i] for i in range(len(self._items) - n, len(self._items))]

    def replay(self, plan: ReplayPlan) -> list[Envelope]:
        if plan.after is not None:
            return self.after(plan.after)
        if plan.last:
            return self.last(plan.last)
        return []


class ChannelSync:
    """Keeps one subscriber's position on one channel and filters what it is sent.

    While a replay is being fetched (`syncing`), live envelopes are held in a
    bounded buffer; `finish` returns those the replay did not already cover.
    Afterwards `accept(seq)` tells whether a live envelope is new to the client.
    """

    def __init__(self, ch: str, max_pending: int = 10_000) -> None:
        self.ch = ch
        self.epoch = ""
        self.seq = 0  # the last seq the client was sent
        self.syncing = True
        self._pending: deque[Envelope] = deque()
        self._max_pending = max_pending

    def hold(self, env: Envelope) -> None:
        """Buffer a live envelope that arrived during the replay; past the bound the oldest go
        (then what `finish` returns starts after a gap, which its caller must not hide)."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
        self._pending.append(env)

    def finish(self, epoch: str, seq: int) -> list[Envelope]:
        """The replay is sent up to `seq`: go live, return held envelopes to send next.

        The position stays at `seq` until the caller sends them: a long-poll answer may take
        only some (the byte bound), and one taken past what it sent would be skipped for good.
        """
        self.epoch, self.seq, self.syncing = epoch, seq, False
        out = [e for e in self._pending if e.seq > seq]
        self._pending.clear()
        return out

    def accept(self, seq: int) -> bool:
        """True when a live envelope with `seq` is new to this client (and record it)."""
        if seq <= self.seq:
            return False
        self.seq = seq
        return True
