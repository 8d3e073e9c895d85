"""The session's rules, in-process: no sockets, no event loop."""

from __future__ import annotations

import json
from typing import Any, Literal

from pulseboard.closes import PROTOCOL_ERRORS, TOKEN_EXPIRED, TOO_SLOW
from pulseboard.protocol import Backfill, Envelope, Live, PulseboardError, Since
from pulseboard_server.fanout import FrameCache
from pulseboard_server.grants import Grants
from pulseboard_server.session import (
    JSON_FRAMES,
    Bounds,
    DoPublish,
    DoRefresh,
    Session,
    StartSub,
    State,
    StopSub,
)

GRANTS = Grants("alice", exp=1000.0, read=("a.*",), publish=("a.*",))


def state_of(s: Session) -> State:
    """The state now (mypy would keep the value an earlier assert narrowed it to)."""
    return s.state


def session(max_buffer: int = 1 << 20, overflow: Literal["close", "cut"] = "close", **kw: Any) -> Session:
    limits = Bounds(max_buffer=max_buffer, max_message_size=kw.pop("max_message_size", 1000),
                    max_channels_per_client=kw.pop("channels", 10), max_violations=kw.pop("violations", 3))
    return Session(GRANTS, limits, JSON_FRAMES, overflow=overflow, **kw)


def env(ch: str, seq: int, pad: int = 0) -> Envelope:
    return Envelope.make(ch, seq, 1.0, {"v": seq, "pad": "x" * pad})


def sent(s: Session) -> list[Any]:
    return [json.loads(data) for data, _ in s.take()]


def seqs(frames: list[Any]) -> list[int]:
    return [e["seq"] for f in frames if isinstance(f, list) for e in f]


def ops(frames: list[Any], name: str) -> list[dict[str, Any]]:
    return [f for f in frames if isinstance(f, dict) and f["op"] == name]


def subscribe(s: Session, ch: str, msgs: list[Envelope], top: int | None = None) -> None:
    s.subscribe({ch: Live()})
    s.subscribed(ch, "E", top if top is not None else (msgs[-1].seq if msgs else 0), True, msgs)


def test_subscribe_checks_grants_and_the_channel_limit() -> None:
    s = session(channels=1)
    actions = s.receive(json.dumps({"op": "subscribe", "ch": {"a.1": None, "b.1": None, "a.2": None}}), 0)
    assert actions == [StartSub("a.1", Live())] and list(s.syncs) == ["a.1"]
    errors = ops(sent(s), "error")
    assert [(e["code"], e["ch"]) for e in errors] == [("forbidden", "b.1"), ("too_large", "a.2")]
    assert s.subscribe({"a.1": Live()}) == [StartSub("a.1", Live())]  # again: not a new channel


def test_subscribe_with_each_starting_point_announces_then_replays() -> None:
    s = session()
    starts = {"a.1": {"since": 3, "epoch": "E"}, "a.3": {"backfill": 2}}
    acts = s.receive(json.dumps({"op": "subscribe", "ch": starts}), 0)
    assert acts == [StartSub("a.1", Since(3, "E")), StartSub("a.3", Backfill(2))]
    s.subscribed("a.1", "E", 5, True, [env("a.1", 4), env("a.1", 5)])
    out = sent(s)
    assert ops(out, "subscribed") == [{"op": "subscribed", "ch": "a.1", "epoch": "E", "seq": 5, "recovered": True}]
    assert seqs(out) == [4, 5]
    assert s.positions() == {"a.1": ("E", 5)}
    subscribe(s, "a.2", [], top=9)  # live: nothing replayed, the position is the top
    assert seqs(sent(s)) == [] and s.positions()["a.2"] == ("E", 9)


def test_refused_subscription_is_an_error_and_forgotten() -> None:
    s = session()
    s.subscribe({"a.1": Live()})
    s.refused("a.1", PulseboardError("unavailable", "broker down"))
    assert ops(sent(s), "error")[0] == {"op": "error", "code": "unavailable", "detail": "broker down", "ch": "a.1"}
    assert s.syncs == {}


def test_live_envelopes_are_held_while_syncing_then_sent_once_in_order() -> None:
    s = session()
    s.subscribe({"a.1": Live()})
    s.deliver([("a.1", [env("a.1", 5), env("a.1", 6)])], FrameCache())  # arrives during the replay fetch
    assert sent(s) == []
    s.subscribed("a.1", "E", 5, True, [env("a.1", 4), env("a.1", 5)])
    assert seqs(sent(s)) == [4, 5, 6]
    s.deliver([("a.1", [env("a.1", 6), env("a.1", 7)])], FrameCache())
    assert seqs(sent(s)) == [7]


def test_replay_is_paced_by_the_queue_and_never_trips_4429() -> None:
    s = session(max_buffer=4000)
    s.subscribe({"a.1": Live()})
    msgs = [env("a.1", i, pad=100) for i in range(1, 101)]  # ~13 KB: three times the bound
    s.subscribed("a.1", "E", 100, True, msgs)
    got: list[int] = []
    for _ in range(100):
        assert s.queued_bytes <= 4000
        frames = sent(s)
        got += seqs(frames)
        s.pump()
        if not s.wants_write():
            break
    assert got == list(range(1, 101)) and s.state is State.OPEN


def test_the_byte_bound_closes_a_lagging_client_with_4429() -> None:
    s = session(max_buffer=2000)
    subscribe(s, "a.1", [])
    for i in range(1, 100):
        s.deliver([("a.1", [env("a.1", i, pad=100)])], FrameCache())
    assert s.state is State.CLOSING and s.close_reason == TOO_SLOW and s.drops == 1
    assert s.take() == []  # what was queued is dropped: the client resumes from its position
    s.deliver([("a.1", [env("a.1", 200)])], FrameCache())
    assert s.take() == []


def test_same_content_is_encoded_once_per_tick() -> None:
    a, b = session(), session()
    for s in (a, b):
        subscribe(s, "a.1", [])
        s.take()
    cache = FrameCache()
    part = [("a.1", [env("a.1", 1)])]
    a.deliver(part, cache)
    b.deliver(part, cache)
    assert a.take()[0][0] is b.take()[0][0]


def test_reset_moves_the_position_and_tells_the_client() -> None:
    s = session()
    subscribe(s, "a.1", [env("a.1", 1)])
    s.take()
    s.reset("a.1", "F", 0)
    assert ops(sent(s), "reset") == [{"op": "reset", "ch": "a.1", "epoch": "F", "seq": 0}]
    s.deliver([("a.1", [env("a.1", 1)])], FrameCache())  # seq 1 of the new epoch is new
    assert seqs(sent(s)) == [1]
    s.reset("a.9", "F", 0)
    assert sent(s) == []


def test_refresh_same_subject_only_and_drops_unreadable_channels() -> None:
    s = session()
    subscribe(s, "a.1", [])
    subscribe(s, "a.2", [])
    s.take()
    assert s.receive(json.dumps({"op": "refresh", "token": "T"}), 0) == [DoRefresh("T")]
    assert s.refreshed(Grants("bob", 2000.0, ("a.*",))) == []
    assert ops(sent(s), "error")[0]["detail"] == "refresh token is for another subject"
    assert s.refreshed(PulseboardError("unauthorized", "bad signature")) == []
    assert ops(sent(s), "error")[0]["detail"] == "refresh refused: bad signature"
    assert s.refreshed(Grants("alice", 2000.0, ("a.1",))) == [StopSub("a.2")]
    out = sent(s)
    assert ops(out, "error")[0]["ch"] == "a.2" and ops(out, "refreshed") == [{"op": "refreshed", "exp": 2000.0}]
    assert list(s.syncs) == ["a.1"] and not s.expire(1500.0)


def test_expiry_closes_with_4001() -> None:
    s = session()
    assert not s.expire(999.0) and s.state is State.OPEN
    assert s.expire(1000.0) and s.close_reason == TOKEN_EXPIRED and state_of(s) is State.CLOSING


def test_bad_input_counts_violations_in_a_row_then_4400() -> None:
    s = session(violations=3)
    s.receive("{nope", 0)
    s.receive(None, 0)
    s.receive(json.dumps({"op": "ping"}), 5.0)  # a good op resets the count
    out = sent(s)
    assert [e["code"] for e in ops(out, "error")] == ["bad_request", "bad_request"]
    assert ops(out, "pong") == [{"op": "pong", "ts": 5.0}]
    s.receive(json.dumps({"op": "nope", "id": 7}), 0)
    assert ops(sent(s), "error")[0]["id"] == 7  # a refused op keeps its id
    s.receive("x" * 2000, 0)
    assert s.state is State.OPEN
    s.receive("[]", 0)
    assert state_of(s) is State.CLOSING and s.close_reason == PROTOCOL_ERRORS


def test_publish_and_unsubscribe() -> None:
    s = session()
    subscribe(s, "a.1", [])
    s.take()
    [act] = s.receive(json.dumps({"op": "publish", "ch": "a.1", "data": {"x": 1}, "id": 3}), 0)
    assert isinstance(act, DoPublish)
    s.published(act.op, env("a.1", 1))
    s.published(act.op, PulseboardError("forbidden", "no"))
    out = sent(s)
    assert ops(out, "ack") == [{"op": "ack", "id": 3, "seq": 1, "ch": "a.1"}]
    assert ops(out, "error")[0]["id"] == 3
    assert s.receive(json.dumps({"op": "unsubscribe", "ch": ["a.1", "a.5"]}), 0) == [StopSub("a.1")]
    assert ops(sent(s), "unsubscribed") == [{"op": "unsubscribed", "ch": ["a.1", "a.5"]}]


def test_cut_mode_stops_a_channel_at_the_bound_and_its_position_with_it() -> None:
    s = session(max_buffer=600, overflow="cut", positions={"a.1": ("E", 0)})
    s.subscribe({"a.1": Live()})
    s.deliver([("a.1", [env("a.1", 21)])], FrameCache())  # held during the replay
    s.subscribed("a.1", "E", 20, True, [env("a.1", i, pad=50) for i in range(1, 21)], announce=False)
    assert s.state is State.OPEN  # poll answers never close on size
    taken = s.take()
    assert all(n == 1 for _, n in taken) and 2 <= len(taken) < 20
    assert s.positions()["a.1"] == ("E", len(taken))
    s.reset("a.1", "F", 0)  # a full channel continues next poll; no reset now
    assert s.take() == []


def answer_seqs(s: Session) -> list[int]:
    """The seqs of a long-poll answer's envelopes (taken one by one in cut mode)."""
    return [json.loads(data)["seq"] for data, n in s.take() if n]


def test_cut_mode_answers_with_what_arrived_during_the_replay_fetch() -> None:
    """Long-poll: envelopes delivered live while a channel's replay was being read (published
    after the read) are in the answer, and the cursor moves only over what the answer holds."""
    s = session(overflow="cut", positions={"a.1": ("E", 3), "a.2": ("E", 7)})
    s.subscribe({"a.1": Since(3, "E"), "a.2": Since(7, "E")})
    s.deliver([("a.1", [env("a.1", 5), env("a.1", 6)]), ("a.2", [env("a.2", 8)])], FrameCache())
    s.subscribed("a.1", "E", 5, True, [env("a.1", 4), env("a.1", 5)], announce=False)
    s.subscribed("a.2", "E", 7, True, [], announce=False)  # nothing to replay, one held
    assert answer_seqs(s) == [4, 5, 6, 8]
    assert s.positions() == {"a.1": ("E", 6), "a.2": ("E", 8)}


def test_cut_mode_held_envelopes_past_the_bound_wait_for_the_next_poll() -> None:
    s = session(max_buffer=600, overflow="cut", positions={"a.1": ("E", 0)})
    s.subscribe({"a.1": Since(0, "E")})
    s.deliver([("a.1", [env("a.1", i, pad=50) for i in range(3, 20)])], FrameCache())
    s.subscribed("a.1", "E", 2, True, [env("a.1", 1, pad=50), env("a.1", 2, pad=50)], announce=False)
    got = answer_seqs(s)
    assert 3 < len(got) < 19 and got == list(range(1, len(got) + 1))
    assert s.positions()["a.1"] == ("E", got[-1])  # the next poll continues right after the answer


HELD = 10_000  # live envelopes a channel holds while its replay is read (ChannelSync's bound)


def test_cut_mode_more_held_than_kept_ends_the_answer_at_the_replay() -> None:
    """Past the hold's bound its oldest are gone: the answer stops after the replay and the
    cursor stays there, so the next poll reads the rest from history instead of skipping it."""
    s = session(overflow="cut", positions={"a.1": ("E", 0)})
    s.subscribe({"a.1": Since(0, "E")})
    s.deliver([("a.1", [env("a.1", i) for i in range(3, HELD + 8)])], FrameCache())
    s.subscribed("a.1", "E", 2, True, [env("a.1", 1), env("a.1", 2)], announce=False)
    s.deliver([("a.1", [env("a.1", HELD + 8)])], FrameCache())  # live again: not past the gap either
    assert answer_seqs(s) == [1, 2]
    assert s.positions()["a.1"] == ("E", 2)


def test_a_stream_that_held_more_than_kept_is_closed_as_lagging_not_sent_a_gap() -> None:
    s = session(positions={"a.1": ("E", 0)})
    s.subscribe({"a.1": Since(0, "E")})
    s.deliver([("a.1", [env("a.1", i) for i in range(3, HELD + 8)])], FrameCache())
    s.subscribed("a.1", "E", 2, True, [env("a.1", 1), env("a.1", 2)])
    assert s.state is State.CLOSING and s.close_reason == TOO_SLOW  # it resumes from its position
    seqs = [e["seq"] for frame in sent(s) if isinstance(frame, list) for e in frame]
    assert seqs == []


def test_closed_session_returns_its_channels_and_takes_nothing() -> None:
    s = session()
    subscribe(s, "a.1", [])
    assert s.closed() == ["a.1"] and s.state is State.CLOSED
    s.deliver([("a.1", [env("a.1", 1)])], FrameCache())
    s.op("pong", ts=1)
    assert s.take() == []


def test_a_frame_for_a_writable_transport_is_handed_back_when_nothing_is_queued() -> None:
    s = session()
    subscribe(s, "a.1", [])
    assert s.deliver([("a.1", [env("a.1", 1)])], FrameCache(), now=True) is None  # `subscribed` is still queued
    assert seqs(sent(s)) == [1]
    out = s.deliver([("a.1", [env("a.1", 2), env("a.1", 3)])], FrameCache(), now=True)  # (one cache per tick)
    assert out is not None and out[1] == 2 and [e["seq"] for e in json.loads(out[0])] == [2, 3]
    assert s.take() == [] and s.positions()["a.1"] == ("E", 3)
