"""The shared test vectors (tests/vectors/*.json), also read by the JS tests in js/test/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pulseboard import client as client_module
from pulseboard.client import Client, Gap, backoff_delay, stops_after
from pulseboard.protocol import Envelope, PulseboardError, Since, decode_cursor, encode_cursor, parse_start
from pulseboard_server.replay import HistoryWindow, plan_replay

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


def env(ch: str, seq: int) -> Envelope:
    return Envelope.make(ch, seq, 1_700_000_000.0 + seq, {"v": seq})


CURSOR = load("cursor")
BACKOFF = load("backoff")
REPLAY = load("replay")
SYNC = load("sync")
FALLBACK = load("fallback")


@pytest.mark.parametrize("case", CURSOR["roundtrip"], ids=lambda c: c["cursor"])
def test_cursor_round_trip(case: dict[str, Any]) -> None:
    positions = {ch: (ep, seq) for ch, (ep, seq) in case["positions"].items()}
    assert encode_cursor(positions) == case["cursor"]
    assert decode_cursor(case["cursor"]) == positions


@pytest.mark.parametrize("bad", CURSOR["invalid"])
def test_cursor_refuses(bad: str) -> None:
    with pytest.raises(PulseboardError) as e:
        decode_cursor(bad)
    assert e.value.code == "bad_request"


@pytest.mark.parametrize("case", BACKOFF["cases"], ids=lambda c: f"attempt{c['attempt']}")
def test_backoff_bounds(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    base, cap = BACKOFF["base"], BACKOFF["cap"]
    monkeypatch.setattr(client_module._rng, "uniform", lambda lo, hi: hi)  # the top of the jitter
    assert backoff_delay(case["attempt"], base, cap) == case["max"]
    monkeypatch.undo()
    for _ in range(200):
        assert 0 <= backoff_delay(case["attempt"], base, cap) <= case["max"]


def history(epoch: str, first: int, top: int) -> HistoryWindow:
    window = HistoryWindow(epoch, maxlen=1000, top=first - 1)
    for seq in range(first, top + 1):
        window.append(env("a", seq))
    return window


def new_client(channels: dict[str, Any], gaps: list[Gap]) -> Client:
    return Client(channels, url="http://127.0.0.1:1", token="t", on_gap=gaps.append)


@pytest.mark.parametrize("case", REPLAY["cases"], ids=lambda c: c["name"])
def test_replay_rule(case: dict[str, Any]) -> None:
    start = parse_start(case["start"])
    plan = plan_replay(start, case["epoch"], case["first"], case["top"])
    assert (plan.recovered, plan.after, plan.last) == (
        case["plan"]["recovered"], case["plan"]["after"], case["plan"]["last"]
    )
    replayed = [e.seq for e in history(case["epoch"], case["first"], case["top"]).replay(plan)]
    assert replayed == case["replayed"]

    # The client's side of the same exchange.
    gaps: list[Gap] = []
    since = isinstance(start, Since)
    client = new_client({"a": {"backfill": 100} if since else case["start"]}, gaps)
    if isinstance(start, Since):
        client.positions["a"] = (start.epoch, start.seq)
        assert client.subscribe_op()["ch"]["a"] == {"since": start.seq, "epoch": start.epoch}
    client.handle_control(
        {"op": "subscribed", "ch": "a", "epoch": case["epoch"], "seq": case["top"],
         "recovered": plan.recovered}
    )
    assert [s for s in replayed if client.accept(env("a", s))] == replayed
    assert bool(gaps) == case["client_gap"]
    assert client.positions["a"] == (case["epoch"], case["client_seq"])
    assert client.accept(env("a", case["client_seq"] + 1))
    assert not client.accept(env("a", case["client_seq"] + 1))


@pytest.mark.parametrize("case", SYNC["cases"], ids=lambda c: c["name"])
def test_positions_dedupe_and_gaps(case: dict[str, Any]) -> None:
    gaps: list[Gap] = []
    client = new_client(case["channels"], gaps)
    accepted: list[list[Any]] = []
    for event in case["events"]:
        if "data" in event:
            accepted += [[ch, seq] for ch, seq in event["data"] if client.accept(env(ch, seq))]
        else:
            client.handle_control(event)
    assert accepted == case["accepted"]
    assert [[g.ch, g.epoch, g.seq] for g in gaps] == case["gaps"]
    assert client.positions == {ch: tuple(p) for ch, p in case["positions"].items()}
    assert client.subscribe_op() == case["subscribe"]
    assert decode_cursor(encode_cursor(client.positions)) == client.positions


def closes_in_fallback() -> list[tuple[int, bool]]:
    """Every close code the browser's fallback vectors end a connection with, and whether it stopped."""
    return sorted({(step["event"]["code"], step["expect"]["phase"]["kind"] == "failed")
            for case in FALLBACK["cases"] for step in case["steps"]
            if step["event"]["type"] == "ended" and "code" in step["event"] and not step["event"].get("authExpired")})


@pytest.mark.parametrize(("code", "stopped"), closes_in_fallback(), ids=lambda v: str(v))
def test_stops_after_the_same_closes_as_the_browser(code: int, stopped: bool) -> None:
    # The rest of fallback.json (transports, relay, probes) has no Python counterpart: this
    # client speaks WebSocket only and retries every non-fatal end with backoff.
    assert stops_after(code) is stopped
