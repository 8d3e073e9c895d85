"""The send path's pure parts: one serialisation per distinct frame, per-client dedupe and holding."""

from __future__ import annotations

import json

from pulseboard.protocol import Envelope
from pulseboard_server.fanout import FrameCache, live_parts
from pulseboard_server.replay import ChannelSync


def envs(ch: str, seqs: range) -> list[Envelope]:
    return [Envelope.make(ch, s, float(s), {"v": s}) for s in seqs]


def live(ch: str, seq: int) -> ChannelSync:
    sync = ChannelSync(ch)
    sync.finish("e", seq)
    return sync


def test_same_content_is_serialised_once() -> None:
    a, b = envs("a", range(1, 4)), envs("b", range(1, 3))
    parts = [("a", a), ("b", b)]
    cache = FrameCache()
    first = cache.frame(live_parts({"a": live("a", 0), "b": live("b", 0)}, parts))
    second = cache.frame(live_parts({"a": live("a", 0), "b": live("b", 0)}, parts))
    assert first is second  # the very same string object goes to both clients
    only_a = cache.frame(live_parts({"a": live("a", 0)}, parts))
    assert [e["ch"] for e in json.loads(only_a)] == ["a", "a", "a"]
    assert [(e["ch"], e["seq"]) for e in json.loads(first)] == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)]


def test_already_replayed_envelopes_are_skipped() -> None:
    parts = [("a", envs("a", range(5, 9)))]
    sync = live("a", 6)  # the replay already sent up to 6
    got = FrameCache().frame(live_parts({"a": sync}, parts))
    assert [e["seq"] for e in json.loads(got)] == [7, 8]
    assert sync.seq == 8
    assert live_parts({"a": sync}, parts) == []  # a second delivery of the same tick is dropped


def test_syncing_channels_are_held_not_sent() -> None:
    syncing = ChannelSync("a")
    parts = [("a", envs("a", range(1, 4))), ("b", envs("b", range(1, 2)))]
    out = live_parts({"a": syncing, "b": live("b", 0)}, parts)
    assert [ch for ch, _, _ in out] == ["b"]
    assert [e.seq for e in syncing.finish("e", 1)] == [2, 3]


def test_unsubscribed_channels_are_ignored() -> None:
    assert live_parts({}, [("a", envs("a", range(1, 3)))]) == []
