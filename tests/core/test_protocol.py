"""The pure core, tested without an event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pulseboard.protocol import (
    Backfill,
    Envelope,
    Live,
    PulseboardError,
    Since,
    batch_frame,
    check_channel,
    check_data,
    decode_cursor,
    dumps,
    encode_cursor,
    envelope_head,
    envelope_tail,
    parse_start,
)
from pulseboard_server.grants import Grants, grants_from_claims
from pulseboard_server.ops import Ping, Publish, Refresh, Subscribe, Unsubscribe, decode_client_frame
from pulseboard_server.replay import ChannelSync, HistoryWindow, plan_replay


def window(n: int, maxlen: int = 5, epoch: str = "e1") -> HistoryWindow:
    w = HistoryWindow(epoch, maxlen)
    for seq in range(1, n + 1):
        w.append(Envelope.make("c", seq, float(seq), {"v": seq}))
    return w


@pytest.mark.parametrize("name", ["a", "sys.host-1", "user/x:y_z", "A" * 200])
def test_valid_channel_names(name: str) -> None:
    assert check_channel(name) == name


@pytest.mark.parametrize("name", ["", "A" * 201, "has space", "emoji😀", None, 3, "semi;colon"])
def test_invalid_channel_names(name: object) -> None:
    with pytest.raises(PulseboardError) as e:
        check_channel(name)
    assert e.value.code == "bad_request"


def test_grants_globs() -> None:
    g = grants_from_claims({"sub": "a", "exp": 10, "read": ["sys.*", "train"], "publish": ["user.a.*"]})
    assert g.can_read("sys.host") and g.can_read("train")
    assert not g.can_read("secret")
    assert g.can_publish("user.a.loss") and not g.can_publish("sys.host")
    with pytest.raises(PulseboardError) as e:
        g.check_publish("sys.host")
    assert e.value.code == "forbidden"


def test_publish_absent_means_none() -> None:
    g = grants_from_claims({"sub": "a", "exp": 10})
    assert g.publish == () and not g.can_publish("x")


@pytest.mark.parametrize(
    "claims",
    [{"exp": 1}, {"sub": "", "exp": 1}, {"sub": "a"}, {"sub": "a", "exp": True},
     {"sub": "a", "exp": 1, "read": [1]}, {"sub": "a", "exp": 1, "publish": {"x": 1}}],
)
def test_bad_claims(claims: dict[str, object]) -> None:
    with pytest.raises(PulseboardError):
        grants_from_claims(claims)


def test_envelope_raw_is_compact_json() -> None:
    env = Envelope.make("c", 3, 1.5, {"x": 1})
    assert json.loads(env.raw) == {"ch": "c", "seq": 3, "ts": 1.5, "data": {"x": 1}}
    assert " " not in env.raw
    assert json.loads(batch_frame([env.raw, env.raw])) == [json.loads(env.raw)] * 2


STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@pytest.mark.parametrize("value", [
    "x", "é\u2028\"\\", 1, -0.0, 1e300, 10**30, True, None, [], {}, [1, {"a": [1.0, "ü", None]}],
    {1: 2, False: 3, None: 4, 1.5: 5}, {"ch": "c", "seq": 3, "ts": 1.5, "data": {"x": [[[]]]}},
])
def test_dumps_writes_what_the_stdlib_encoder_writes(value: object) -> None:
    assert dumps(value) == STDLIB(value)


def test_dumps_refuses_what_json_cant_carry() -> None:
    loop: list[object] = []
    loop.append(loop)
    for bad, error in [(float("nan"), ValueError), ({"a": float("inf")}, ValueError), (loop, ValueError),
                       ({"a": object()}, TypeError), ({(1, 2): 1}, TypeError)]:
        with pytest.raises(error):
            dumps(bad)


def test_envelope_from_head_and_tail_is_the_same_text() -> None:
    cases: list[tuple[str, int, float, dict[str, Any]]] = [
        ("c", 3, 1.5, {"x": 1}), ("a/b:c", 10**9, 1e9, {"é": [1, None], "s": "\u2028"})]
    for ch, seq, ts, data in cases:
        made = Envelope.make(ch, seq, ts, data)
        assert Envelope.numbered(ch, seq, ts, data, envelope_head(ch), envelope_tail(ts, data)) == made
        assert envelope_head(ch) + str(seq) + envelope_tail(ts, data) == made.raw == STDLIB(
            {"ch": ch, "seq": seq, "ts": ts, "data": data})


@pytest.mark.parametrize("data, checked", [
    ({"loss": 0.5, "step": 3}, {"loss": 0.5, "step": 3}),  # the flat metrics the quick check takes
    ({}, {}),
    ({"loss": float("nan"), "i": 1}, {"loss": None, "i": 1}),  # NaN/inf become null either way
    ({"a": float("inf"), "b": float("-inf")}, {"a": None, "b": None}),
    ({"a": 1e308, "b": 1e308}, {"a": 1e308, "b": 1e308}),  # their sum overflows: still kept
    ({"big": 10**400, "x": 0.5}, {"big": None, "x": 0.5}),  # past the float range: a browser's Infinity
    ({"big": -(10**400), "n": 10**300}, {"big": None, "n": 10**300}),
    ({"ok": True, "n": None, "s": "t"}, {"ok": True, "n": None, "s": "t"}),
])
def test_check_data_keeps_numbers_and_nulls_non_finite(data: dict[str, object], checked: dict[str, object]) -> None:
    out = check_data(data)
    assert out == checked and out is not data  # a copy: the caller's dict may change later


def test_check_data_names_the_field_with_a_lone_surrogate_in_flat_numbers() -> None:
    with pytest.raises(PulseboardError) as err:
        check_data({"ok": 1.0, "bad\udc80": 2.0})
    assert "a 'data' key" in err.value.detail and "U+DC80" in err.value.detail
    with pytest.raises(PulseboardError) as err:
        check_data({1: 2.0})  # type: ignore[dict-item]
    assert "keys must be strings" in err.value.detail


def test_history_window_trims_and_slices() -> None:
    w = window(8)
    assert (w.first, w.top, len(w)) == (4, 8, 5)
    assert [e.seq for e in w.after(5)] == [6, 7, 8]
    assert [e.seq for e in w.after(0)] == [4, 5, 6, 7, 8]
    assert [e.seq for e in w.after(5, limit=2)] == [6, 7]
    assert [e.seq for e in w.after(8)] == []
    assert [e.seq for e in w.last(2)] == [7, 8]
    assert [e.seq for e in w.last(50)] == [4, 5, 6, 7, 8]


def test_history_window_rejects_out_of_order() -> None:
    w = window(2)
    with pytest.raises(ValueError):
        w.append(Envelope.make("c", 5, 0.0, {}))


def test_empty_window() -> None:
    w = HistoryWindow("e", 3)
    assert (w.first, w.top) == (1, 0)
    assert w.replay(plan_replay(Backfill(10), "e", w.first, w.top)) == []


class TestReplayRule:
    def test_live(self) -> None:
        w = window(8)
        plan = plan_replay(Live(), "e1", w.first, w.top)
        assert plan.recovered and w.replay(plan) == []

    def test_backfill_clamped(self) -> None:
        w = window(8)
        plan = plan_replay(Backfill(3), "e1", w.first, w.top)
        assert plan.recovered and [e.seq for e in w.replay(plan)] == [6, 7, 8]
        plan = plan_replay(Backfill(300), "e1", w.first, w.top)
        assert [e.seq for e in w.replay(plan)] == [4, 5, 6, 7, 8]

    def test_since_inside_history_is_exact(self) -> None:
        w = window(8)
        plan = plan_replay(Since(5, "e1"), "e1", w.first, w.top)
        assert plan.recovered and [e.seq for e in w.replay(plan)] == [6, 7, 8]

    def test_since_just_before_history_is_still_exact(self) -> None:
        w = window(8)  # holds 4..8: a client at 3 misses nothing
        plan = plan_replay(Since(3, "e1"), "e1", w.first, w.top)
        assert plan.recovered and [e.seq for e in w.replay(plan)] == [4, 5, 6, 7, 8]

    def test_since_older_than_history(self) -> None:
        w = window(8)
        plan = plan_replay(Since(1, "e1"), "e1", w.first, w.top)
        assert not plan.recovered
        assert [e.seq for e in w.replay(plan)] == [4, 5, 6, 7, 8]

    def test_since_other_epoch(self) -> None:
        w = window(8)
        plan = plan_replay(Since(6, "old"), "e1", w.first, w.top)
        assert not plan.recovered and w.replay(plan) == []

    def test_since_ahead_of_top(self) -> None:
        w = window(8)
        plan = plan_replay(Since(20, "e1"), "e1", w.first, w.top)
        assert not plan.recovered and w.replay(plan) == []

    def test_since_at_top(self) -> None:
        w = window(8)
        plan = plan_replay(Since(8, "e1"), "e1", w.first, w.top)
        assert plan.recovered and w.replay(plan) == []


@pytest.mark.parametrize(
    ("spec", "start"),
    [(None, Live()), ({}, Live()), ({"backfill": 3}, Backfill(3)), ({"since": 4, "epoch": "e"}, Since(4, "e"))],
)
def test_parse_start(spec: object, start: object) -> None:
    assert parse_start(spec) == start


@pytest.mark.parametrize(
    "spec", [{"backfill": -1}, {"backfill": "3"}, {"since": 4}, {"since": True, "epoch": "e"}, [1], {"foo": 1}]
)
def test_parse_start_rejects(spec: object) -> None:
    with pytest.raises(PulseboardError):
        parse_start(spec)


def test_decode_ops() -> None:
    op = decode_client_frame('{"op":"subscribe","ch":{"A":{"since":41,"epoch":"x"},"B":{"backfill":3},"C":null}}')
    assert op == Subscribe({"A": Since(41, "x"), "B": Backfill(3), "C": Live()})
    assert decode_client_frame('{"op":"unsubscribe","ch":["A"]}') == Unsubscribe(("A",))
    assert decode_client_frame('{"op":"publish","ch":"A","data":{"v":1},"id":7}') == Publish("A", {"v": 1}, 7)
    assert decode_client_frame('{"op":"refresh","token":"t"}') == Refresh("t")
    assert decode_client_frame('{"op":"ping"}') == Ping()


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ("not json", "not valid JSON"),
        ("[1,2]", "JSON object"),
        ('{"op":"dance"}', "unknown op"),
        ('{"op":"subscribe"}', "needs 'ch'"),
        ('{"op":"subscribe","ch":{"bad name":null}}', "invalid channel"),
        ('{"op":"publish","ch":"A","data":[1]}', "'data' must be a JSON object"),
        ('{"op":"publish","ch":"A","data":{},"ts":"now"}', "'ts'"),
        ('{"op":"refresh"}', "needs 'token'"),
    ],
)
def test_decode_errors_say_what_was_wrong(frame: str, words: str) -> None:
    with pytest.raises(PulseboardError) as e:
        decode_client_frame(frame)
    assert e.value.code == "bad_request" and words in e.value.detail


def test_cursor_round_trip_and_rejects_garbage() -> None:
    pos = {"a": ("e1", 5), "sys.h": ("e2", 0)}
    cursor = encode_cursor(pos)
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor
    assert decode_cursor(cursor) == pos
    for bad in ["???", "e30", encode_cursor({}) + "x!", "W10"]:  # e30 = {} is fine; W10 = []
        if bad == "e30":
            assert decode_cursor(bad) == {}
            continue
        with pytest.raises(PulseboardError):
            decode_cursor(bad)


class TestChannelSync:
    def test_holds_during_replay_then_dedupes(self) -> None:
        s = ChannelSync("c")
        for seq in (5, 6, 7):
            s.hold(Envelope.make("c", seq, 0.0, {}))
        held = s.finish("e", 6)  # the replay already covered up to 6
        assert [e.seq for e in held] == [7]
        assert not s.syncing and s.seq == 6  # 7 is not sent yet: the sender moves the position
        assert s.accept(7) and not s.accept(7) and s.accept(8) and not s.accept(8)

    def test_pending_is_bounded(self) -> None:
        s = ChannelSync("c", max_pending=3)
        for seq in range(1, 11):
            s.hold(Envelope.make("c", seq, 0.0, {}))
        assert [e.seq for e in s.finish("e", 0)] == [8, 9, 10]  # 1..7 gone: the caller sees the gap


def test_grants_cover_prefix_patterns_only_when_sound() -> None:
    g = Grants("u", 0, read=("sys.*", "train.run*", "x.[ab]", "a?c*"))
    assert g.covers("sys.host1") and g.covers("sys.*") and g.covers("sys.cpu.*")
    assert g.covers("train.run*") and g.covers("train.run1*")
    assert not g.covers("train.*")  # wider than the grant
    assert not g.covers("s*") and not g.covers("*")
    assert not g.covers("abc.*")  # 'a?c*' has a wildcard in its prefix: not trusted to contain it
    assert Grants("u", 0, read=("*",)).covers("*")
