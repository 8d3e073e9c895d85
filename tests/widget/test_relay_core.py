"""The relay's pure parts: frames in order, the byte budget and thinning (no kernel, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pulseboard.protocol import Envelope
from pulseboard.relay import BYTES_PER_SECOND, TICK, Relay, _frames_text, first_start, via_setting


def envs(ch: str, n: int, start: int = 1) -> list[Envelope]:
    return [Envelope.make(ch, s, 1000.0 + s / 1000, {"v": (s * 7919) % 101}) for s in range(start, start + n)]


def relay_with(sent: list[dict[str, Any]]) -> Relay:
    return Relay(sent.append, lambda: ("http://127.0.0.1:1", "t"), lambda: "t")


def test_frames_keep_control_ops_in_order_with_the_envelopes() -> None:
    a, b = envs("a", 2), envs("a", 1, start=3)
    op = {"op": "reset", "ch": "a", "epoch": "e2", "seq": 0}
    frames = json.loads(_frames_text([*a, op, *b]))
    assert [f if isinstance(f, dict) else [e["seq"] for e in f] for f in frames] == [[1, 2], op, [3]]


def test_a_flood_is_thinned_to_the_budget_and_says_so() -> None:
    sent: list[dict[str, Any]] = []
    relay = relay_with(sent)
    relay.gen = 1
    flood = envs("a", 5000)  # 10,000 msgs/s for half a second, arriving in one tick
    for e in flood:
        relay.take(1, e)
    relay.flush(BYTES_PER_SECOND * TICK)
    (msg,) = sent
    assert msg["thinning"] is True
    assert len(msg["text"]) <= BYTES_PER_SECOND  # at most one second's budget, banked
    seqs = [e["seq"] for f in json.loads(msg["text"]) for e in f]
    assert seqs[0] == 1 and seqs[-1] == 5000 and seqs == sorted(seqs)
    assert len(seqs) < 5000


def test_a_feed_within_the_budget_goes_whole() -> None:
    sent: list[dict[str, Any]] = []
    relay = relay_with(sent)
    relay.gen = 1
    for e in envs("a", 50):
        relay.take(1, e)
    relay.take(2, envs("a", 1, start=99)[0])  # from a subscription since replaced: dropped
    relay.flush(BYTES_PER_SECOND * TICK)
    assert sent[0]["thinning"] is False
    assert [e["seq"] for f in json.loads(sent[0]["text"]) for e in f] == list(range(1, 51))


def test_via_setting_and_the_first_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSEBOARD_VIA", "kernel")
    assert via_setting(None) == "kernel"
    assert via_setting("direct") == "direct"
    with pytest.raises(ValueError, match="via must be"):
        via_setting("carrier-pigeon")
    assert first_start(300, 200_000) == {"backfill": 6000}
    assert first_start(None, 5000) == {"backfill": 5000}


def test_a_bad_relay_start_gets_a_one_line_answer_not_a_subscription() -> None:
    sent: list[dict[str, Any]] = []
    relay = relay_with(sent)
    for bad in ({}, {"ch": "a"}, {"ch": {f"c{i}": None for i in range(300)}}):
        assert relay.on_msg({"type": "relay-start", "view": "v", **bad}) is True
    assert [m["type"] for m in sent] == ["relay-end"] * 3
    assert "1 to 256 channels" in sent[0]["fatal"]
    assert relay.on_msg({"type": "token-request"}) is False

