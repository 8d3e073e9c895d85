"""One client's session, for every transport, with no I/O (like websockets' `protocol.py`).

A `Session` takes events in (client ops, replays, live deliveries, resets, a
refreshed token, the time) and keeps what is to be sent in one bounded queue of
encoded bytes. The transport around it only authenticates, does the awaiting
(broker calls, token checks) and writes what `take()` hands out; it closes the
connection when `state` says so, with `close_reason`.

Rules kept here, in one place:
- the queue holds at most `max_buffer` bytes; a frame that would pass it closes
  the client with 4429 (`overflow="close"`) or, for long-poll, ends that channel's
  share of the answer where it is (`overflow="cut"`: the cursor continues next poll);
- a replay is queued in chunks only while the queue is under half its bound, so a
  long replay is paced by the client (`pump()` after each write);
- live envelopes of a channel whose replay is not finished are held, then sent
  after it, each once and in order;
- a client op that is malformed or too large counts as a violation; `max_violations`
  in a row close the client with 4400;
- the session ends with 4001 once the token's `exp` has passed (`expire(now)`).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pulseboard.closes import PROTOCOL_ERRORS, TOKEN_EXPIRED, TOO_SLOW, Close
from pulseboard.protocol import (
    FORBIDDEN,
    TOO_LARGE,
    Envelope,
    Positions,
    PulseboardError,
    Start,
    bad_request,
    batch_frame,
    control,
    encodable,
)

from .fanout import FrameCache, Part, live_parts, replay_chunks
from .grants import Grants
from .limits import check_json_depth
from .ops import ClientOp, Publish, Refresh, Subscribe, Unsubscribe, decode_client_frame
from .replay import ChannelSync

log = logging.getLogger("pulseboard.session")


class State(enum.Enum):
    OPEN = "open"  # ops in, frames out
    CLOSING = "closing"  # a close is decided: what is queued is still written, nothing more is queued
    CLOSED = "closed"  # the transport is gone


@dataclass(frozen=True)
class Bounds:
    """The bounds a session keeps (from `Settings`)."""

    max_buffer: int
    max_message_size: int
    max_channels_per_client: int
    max_violations: int


@dataclass(frozen=True)
class Encoder:
    """How a transport turns session output into bytes.

    `op(name, fields, positions)` a control op; `data(frame, positions)` a data frame
    (a JSON array, already bytes); `close(code, reason, positions)` the last thing sent
    before a close, or None when the transport closes out of band (WebSocket).
    """

    op: Callable[[str, dict[str, Any], Session], bytes]
    data: Callable[[bytes, Session], bytes]
    close: Callable[[Close, Session], bytes | None]


def _json_op(name: str, fields: dict[str, Any], session: Session) -> bytes:
    return control(name, **fields).encode()


def _same(frame: bytes, session: Session) -> bytes:
    return frame


def _no_close(close: Close, session: Session) -> bytes | None:
    return None


# Ops and frames as JSON text, the close out of band: the WebSocket, and long-poll answers.
JSON_FRAMES = Encoder(_json_op, _same, _no_close)


@dataclass(frozen=True)
class StartSub:
    """Subscribe `ch` from `start`: the transport registers it with the fan-out and fetches the
    replay, then calls `subscribed()` (or `refused()`)."""

    ch: str
    start: Start


@dataclass(frozen=True)
class DoPublish:
    """Publish `op`, then call `published()` with the envelope or the error."""

    op: Publish


@dataclass(frozen=True)
class DoRefresh:
    """Verify `token`, then call `refreshed()` with the grants or the error."""

    token: str


@dataclass(frozen=True)
class StopSub:
    """Drop the fan-out registration of `ch`."""

    ch: str


Action = StartSub | DoPublish | DoRefresh | StopSub


Overflow = Literal["close", "cut"]  # past the byte bound: close with 4429, or end this answer (long-poll)


class CutAtBound:
    """Long-poll's rule at the byte bound: the answer ends there instead of the client being closed.

    Envelopes are taken one at a time; the first that would pass the bound ends its channel's share
    of this answer (`ended`), and the channel's position stays at the last one taken, so the next
    poll's cursor continues exactly there. Ops always fit: an answer must say why it is short.
    """

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended: set[str] = set()

    def take(self, session: Session, ch: str, envs: Sequence[Envelope]) -> None:
        if ch in self.ended:
            return
        sync = session.syncs[ch]
        for env in envs:
            if env.seq <= sync.seq:
                continue
            raw = env.raw.encode()
            if session.queued_bytes and session.queued_bytes + len(raw) > session.limits.max_buffer:
                self.ended.add(ch)
                return
            session.append_raw(raw)
            sync.seq = env.seq


class Session:
    """A client's grants, channel positions, replay pacing and bounded outgoing queue."""

    __slots__ = ("_out", "_out_bytes", "_replays", "close_reason", "cut", "drops", "encoder", "grants",
                 "limits", "on_drop", "on_error", "resume", "state", "syncs", "violations")

    def __init__(
        self,
        grants: Grants,
        limits: Bounds,
        encoder: Encoder,
        overflow: Overflow = "close",
        positions: Positions | None = None,
        on_error: Callable[[str], None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.grants = grants
        self.limits = limits
        self.encoder = encoder
        # At the byte bound: None closes the client with 4429; long-poll ends the answer instead.
        self.cut = CutAtBound() if overflow == "cut" else None
        self.state = State.OPEN
        self.close_reason: Close | None = None
        self.syncs: dict[str, ChannelSync] = {}
        self.resume: Positions = dict(positions or {})  # positions the client resumes from
        self.violations = 0
        self.on_error = on_error  # called with each error op's code (metrics)
        self.on_drop = on_drop  # called on a 4429 close (metrics)
        self.drops = 0
        self._out: list[tuple[bytes, int]] = []  # lists, not deques: a few hundred bytes less per client
        self._out_bytes = 0
        self._replays: list[tuple[str, Sequence[Envelope], int]] = []  # (ch, msgs, sent so far)

    # --- the queue ------------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        return self._out_bytes

    def has_room(self) -> bool:
        """True while the queue is under half its bound (replays are queued only then)."""
        return self._out_bytes <= self.limits.max_buffer // 2

    def take(self) -> list[tuple[bytes, int]]:
        """Everything queued, as (bytes, envelopes in it); the caller writes it in order."""
        out, self._out = self._out, []
        self._out_bytes = 0
        return out

    def wants_write(self) -> bool:
        return bool(self._out)

    def _queue(self, data: bytes, envelopes: int = 0) -> bool:
        """Queue `data`; False when it was refused (closing, or the bound: 4429)."""
        if self.state is not State.OPEN:
            return False
        if self._out_bytes + len(data) > self.limits.max_buffer and (envelopes or self.cut is None):
            self._lagging()
            return False
        self._out.append((data, envelopes))
        self._out_bytes += len(data)
        return True

    def _lagging(self) -> None:
        """The client fell behind what the session can hold: close it with 4429; it resumes
        exactly from its positions (history has what it missed)."""
        self.drops += 1
        if self.on_drop is not None:
            self.on_drop()
        log.info("closing %s: lagging past what a session holds", self.grants.sub)
        self._out.clear()
        self._out_bytes = 0
        self._replays.clear()
        self.close(TOO_SLOW)

    def _ended(self, ch: str) -> bool:
        """Long-poll: `ch`'s share of this answer has ended at the byte bound."""
        return self.cut is not None and ch in self.cut.ended

    def append_raw(self, raw: bytes) -> None:
        """One encoded envelope for a gathered answer (long-poll): it joins the others with a comma."""
        self._out.append((raw, 1))
        self._out_bytes += len(raw) + 1

    def op(self, name: str, **fields: Any) -> None:
        self._queue(self.encoder.op(name, fields, self))

    def error(self, err: PulseboardError, **extra: Any) -> None:
        if self.on_error is not None:
            self.on_error(err.code)
        self.op("error", code=err.code, detail=err.detail, **extra)

    def close(self, close: Close) -> None:
        """Decide to close: queue the transport's last words; `state` becomes CLOSING."""
        if self.state is not State.OPEN:
            return
        last = self.encoder.close(close, self)
        if last is not None:
            self._out.append((last, 0))
            self._out_bytes += len(last)
        self.state = State.CLOSING
        self.close_reason = close

    def closed(self) -> list[str]:
        """The transport is gone: return the channels to unregister."""
        self.state = State.CLOSED
        self._out.clear()
        self._out_bytes = 0
        self._replays.clear()
        channels = list(self.syncs)
        self.syncs.clear()
        return channels

    # --- positions ------------------------------------------------------------------

    def positions(self) -> Positions:
        """Each channel's (epoch, last seq sent): what a resume cursor holds."""
        out = dict(self.resume)
        for ch, sync in self.syncs.items():
            if sync.epoch:
                out[ch] = (sync.epoch, sync.seq)
        return out

    # --- client ops (WebSocket) -----------------------------------------------------

    def receive(self, text: str | None, now: float, read: ReadFrame | None = None) -> list[Action]:
        """One client frame at time `now`: what to do next (the answer to simple ops is queued here).
        `read` is `read_frame(text, ...)` when the transport already ran it (off the event loop)."""
        if self.state is not State.OPEN:
            return []
        op, op_ids = read if read is not None else read_frame(text, self.limits.max_message_size)
        if isinstance(op, PulseboardError):
            self.violation(op, **op_ids)
            return []
        self.violations = 0
        if isinstance(op, Subscribe):
            return list(self.subscribe(op.channels))
        if isinstance(op, Unsubscribe):
            actions: list[Action] = [StopSub(ch) for ch in op.channels if self.syncs.pop(ch, None)]
            self.op("unsubscribed", ch=list(op.channels))
            return actions
        if isinstance(op, Publish):
            return [DoPublish(op)]
        if isinstance(op, Refresh):
            return [DoRefresh(op.token)]
        self.op("pong", ts=now)  # Ping, the last op type
        return []

    def violation(self, err: PulseboardError, **extra: Any) -> None:
        """A refused client frame: an error op; `max_violations` in a row close with 4400."""
        self.error(err, **extra)
        if err.code in ("bad_request", TOO_LARGE):
            self.violations += 1
            log.info("protocol error from %s: %s", self.grants.sub, err.detail)
            if self.violations >= self.limits.max_violations:
                self.close(PROTOCOL_ERRORS)

    def published(self, op: Publish, env: Envelope | PulseboardError) -> None:
        if isinstance(env, PulseboardError):
            self.error(env, id=op.id, ch=op.ch)
        else:
            self.op("ack", id=op.id, seq=env.seq, ch=env.ch)

    def refreshed(self, grants: Grants | PulseboardError) -> list[StopSub]:
        """A `refresh` op's token, checked: new grants and expiry, channels no longer readable dropped."""
        if isinstance(grants, PulseboardError):
            self.error(PulseboardError(FORBIDDEN, f"refresh refused: {grants.detail}"))
            return []
        if grants.sub != self.grants.sub:
            self.error(PulseboardError(FORBIDDEN, "refresh token is for another subject"))
            return []
        self.grants = grants
        actions: list[StopSub] = []
        for ch in [c for c in self.syncs if not grants.can_read(c)]:
            del self.syncs[ch]
            actions.append(StopSub(ch))
            self.error(PulseboardError(FORBIDDEN, f"token may no longer read {ch!r}"), ch=ch)
        self.op("refreshed", exp=grants.exp)
        return actions

    # --- subscriptions --------------------------------------------------------------

    def subscribe(self, channels: dict[str, Start]) -> list[StartSub]:
        """Check each channel against the grants and the channel limit; start the others.

        A started channel holds its live envelopes until `subscribed()` (or `refused()`).
        """
        actions: list[StartSub] = []
        limit = self.limits.max_channels_per_client
        for ch, start in channels.items():
            if not self.grants.can_read(ch):
                self.error(PulseboardError(FORBIDDEN, f"token may not read {ch!r}"), ch=ch)
            elif ch not in self.syncs and len(self.syncs) >= limit:
                self.error(PulseboardError(TOO_LARGE, f"over {limit} channels"), ch=ch)
            else:
                self.begin(ch)
                actions.append(StartSub(ch, start))
        return actions

    def begin(self, ch: str) -> ChannelSync:
        """Track `ch` (its live envelopes are held) before the broker registration and replay."""
        sync = self.syncs[ch] = ChannelSync(ch)
        return sync

    def refused(self, ch: str, err: PulseboardError) -> None:
        self.syncs.pop(ch, None)
        self.error(err, ch=ch)

    def subscribed(
        self, ch: str, epoch: str, top: int, recovered: bool, msgs: Sequence[Envelope], announce: bool = True
    ) -> None:
        """The replay of `ch` is known: announce it and queue it, paced (see `pump`)."""
        sync = self.syncs.get(ch)
        if sync is None or self.state is not State.OPEN:
            return
        self.resume.pop(ch, None)
        sync.epoch = epoch
        sync.seq = msgs[0].seq - 1 if msgs else top
        if announce:
            self.op("subscribed", ch=ch, epoch=epoch, seq=top, recovered=recovered)
        self._replays.append((ch, msgs, 0))
        self.pump()

    def pump(self) -> None:
        """Queue replay chunks while there is room; a finished replay releases what was held."""
        chunk_bytes = self.limits.max_buffer // 4
        # Per call, about one chunk: the transport pumps again after each write, so a long replay
        # goes out a slice at a time instead of being framed all at once on the event loop.
        stop_at = self._out_bytes + chunk_bytes
        while self._replays and self.state is State.OPEN:
            ch, msgs, sent = self._replays[0]
            sync = self.syncs.get(ch)
            if sync is None:  # unsubscribed meanwhile
                del self._replays[0]
                continue
            if sent < len(msgs):
                if self.cut is None and (not self.has_room() or self._out_bytes >= stop_at):
                    return
                chunk = next(replay_chunks(msgs, chunk_bytes, sent))
                self._replays[0] = (ch, msgs, sent + len(chunk))
                self._data(ch, chunk)
                continue
            del self._replays[0]
            ended = self._ended(ch)
            seq = sync.seq if ended else (msgs[-1].seq if msgs else sync.seq)
            held = sync.finish(sync.epoch, seq)  # the position moves only as they are sent
            if held and held[0].seq > seq + 1:
                # The hold overflowed and its oldest are gone: sending the rest would skip what
                # came between without a word. The client reads on from its position instead,
                # through history: long-poll's answer ends here, a stream closes as lagging.
                if self.cut is not None:
                    self.cut.ended.add(ch)
                else:
                    self._lagging()
                    return
            elif held and not ended:  # (ended: what was held waits for the next answer)
                self._data(ch, held)

    def _data(self, ch: str, envs: Sequence[Envelope]) -> None:
        """One channel's envelopes (replayed or held) as one frame; its position follows."""
        if self.cut is not None:
            self.cut.take(self, ch, envs)
            return
        sync = self.syncs[ch]
        sync.seq = envs[-1].seq
        self._queue(self.encoder.data(batch_frame(e.raw for e in envs).encode(), self), len(envs))

    # --- the broker's side ----------------------------------------------------------

    def deliver(self, parts: Sequence[Part], cache: FrameCache, now: bool = False) -> tuple[bytes, int] | None:
        """A fan-out tick: this client's share, as one frame built once for all who share it.

        With `now` (the transport can write at once) and nothing queued before it, the frame
        and its envelope count are returned for the caller to write, instead of queued.
        """
        if self.state is not State.OPEN:
            return None
        if self.cut is not None:
            for ch, skip, envs in live_parts(self.syncs, parts, advance=False):
                self.cut.take(self, ch, envs[skip:])
            return None
        live = live_parts(self.syncs, parts)
        if not live:
            return None
        n = 0
        for _, skip, envs in live:
            n += len(envs) - skip
        data = self.encoder.data(cache.frame(live), self)
        if now and not self._out and len(data) <= self.limits.max_buffer:
            return data, n
        self._queue(data, n)
        return None

    def reset(self, ch: str, epoch: str, seq: int) -> None:
        """The channel's numbering restarted: the client is told and its position follows."""
        sync = self.syncs.get(ch)
        if sync is None or self._ended(ch) or self.state is not State.OPEN:
            return
        sync.epoch, sync.seq = epoch, seq
        self.op("reset", ch=ch, epoch=epoch, seq=seq)

    # --- time -----------------------------------------------------------------------

    def expire(self, now: float) -> bool:
        """Close with 4001 when the token has expired at `now`; True if it has."""
        if now >= self.grants.exp:
            self.close(TOKEN_EXPIRED)
            return True
        return False


ReadFrame = tuple["ClientOp | PulseboardError", dict[str, Any]]  # the op or its refusal, and the refused op's `id`


def read_frame(text: str | None, max_size: int) -> ReadFrame:
    """One client frame decoded and checked, with no session state: a transport may run it on a
    worker thread (a big frame is CPU work: parsing, the depth scan, checking every value)."""
    try:
        if text is None:
            raise bad_request("binary frames are not supported: send JSON text")
        if len(text) > max_size:
            raise PulseboardError(TOO_LARGE, f"frame over the {max_size}-byte limit")
        check_json_depth(text)  # deep nesting is a 400, not a RecursionError
        return decode_client_frame(text), {}
    except PulseboardError as e:
        return e, op_id(text)


def op_id(text: str | None) -> dict[str, Any]:
    """The `id` of a refused op, so the client can match the error to its request."""
    if text is None or '"id"' not in text:
        return {}
    try:
        obj = json.loads(text, parse_constant=lambda _: None)  # NaN `id`s echo back as null
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return {}
    if not isinstance(obj, dict) or "id" not in obj or not encodable(obj["id"]):
        return {}  # an id that can't be sent back is left out, not the error
    return {"id": obj["id"]}
