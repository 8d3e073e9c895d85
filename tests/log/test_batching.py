"""The sender's batch planner and its answers, driven with plain values: no server, no threads."""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pulseboard.batching import BACKOFF_MAX, BACKOFF_MIN, Answer, BatchPlanner, Outage, classify, encode
from pulseboard.client import backoff_delay
from pulseboard.discovery import DiscoveryError, NotConfigured, discover, discover_for_kernel
from pulseboard_server.brokers.redis_link import backoff


def items(n: int, width: int = 1, start: int = 0) -> deque[dict[str, Any]]:
    """Pending items as the sender keys them; `width` fields each."""
    return deque({"ch": "c", "data": {f"f{j}": i for j in range(width)}, "ts": 1.0, "key": f"r-{i}"}
                 for i in range(start, start + n))


def planner(**kwargs: Any) -> BatchPlanner:
    return BatchPlanner(jitter=lambda: 1.0, **kwargs)


@dataclass
class Run:
    delivered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


def drive(p: BatchPlanner, pending: deque[dict[str, Any]], server: Callable[[list[dict[str, Any]]], Answer],
          attempts: int = 1000) -> Run:
    """What sender.py does with the planner, with `server` answering each body."""
    run = Run()
    for _ in range(attempts):
        if not pending:
            return run
        batch = p.next_batch(pending)
        run.bodies.append(batch.body)
        p.prepare(pending, batch.n)  # the sender encodes the next batch while the server works
        step = p.after(server(json.loads(batch.body)), batch.n)
        run.delivered += [pending.popleft()["key"] for _ in range(step.delivered)]
        if step.refused:
            run.refused.append(pending.popleft()["key"])
        if step.wait:
            run.waits.append(step.wait)
    raise AssertionError(f"still {len(pending)} pending after {attempts} attempts")


@pytest.mark.parametrize(("status", "answer"), [
    (200, Answer.DELIVERED), (400, Answer.REFUSED), (403, Answer.REFUSED), (413, Answer.REFUSED),
    (422, Answer.REFUSED), (401, Answer.UNAUTHORIZED), (404, Answer.RETRY), (407, Answer.RETRY),
    (408, Answer.RETRY), (425, Answer.RETRY), (429, Answer.RETRY), (500, Answer.RETRY),
    (502, Answer.GATEWAY), (503, Answer.GATEWAY), (504, Answer.GATEWAY)])
def test_every_status_names_one_answer(status: int, answer: Answer) -> None:
    assert classify(status) is answer


def test_a_batch_holds_at_most_the_count_cap_in_order() -> None:
    pending = items(25)
    batch = planner(batch_max=10).next_batch(pending)
    assert batch.n == 10
    assert [m["key"] for m in json.loads(batch.body)] == [f"r-{i}" for i in range(10)]


def test_a_batch_holds_at_most_the_byte_cap_and_a_big_message_goes_alone() -> None:
    p = planner(batch_max=1000, batch_bytes=2000)
    batch = p.next_batch(items(200, width=5))
    assert len(batch.body) <= 2000 and 1 < batch.n < 200
    big = p.next_batch(items(3, width=500))  # one message is bigger than the cap on its own
    assert big.n == 1 and len(big.body) > 2000


def test_everything_is_delivered_once_in_order_over_many_batches() -> None:
    run = drive(planner(batch_max=7, batch_bytes=600), items(100, width=3), lambda body: Answer.DELIVERED)
    assert run.delivered == [f"r-{i}" for i in range(100)] and run.waits == [] and run.refused == []


def test_a_refused_message_is_isolated_and_refused_alone() -> None:
    pending = items(40)
    pending[17]["data"] = {"bad": True}

    def server(body: list[dict[str, Any]]) -> Answer:
        return Answer.REFUSED if any(m["data"] == {"bad": True} for m in body) else Answer.DELIVERED

    p = planner(batch_max=16)
    run = drive(p, pending, server)
    assert run.refused == ["r-17"]
    assert run.delivered == [f"r-{i}" for i in range(40) if i != 17]
    assert run.waits == []  # content refusals are never waited on or retried
    assert p.cap == 16  # and the cap is back to full afterwards


@pytest.mark.parametrize("answer", [Answer.UNREACHABLE, Answer.GATEWAY, Answer.RETRY, Answer.UNAUTHORIZED])
def test_a_failed_batch_is_resent_as_is_after_growing_pauses(answer: Answer) -> None:
    answers = iter([answer] * 8 + [Answer.DELIVERED])
    p = planner(batch_max=10)
    run = drive(p, items(10), lambda body: next(answers))
    assert run.delivered == [f"r-{i}" for i in range(10)]
    assert len(set(run.bodies)) == 1  # the same messages with the same keys each time
    assert run.waits == [BACKOFF_MIN, 0.1, 0.2, 0.4, 0.8, 1.6, BACKOFF_MAX, BACKOFF_MAX]
    assert p.backoff == BACKOFF_MIN  # a delivery starts the next outage from the shortest pause


@pytest.mark.parametrize(("answer", "reached", "reconnect", "relogin"), [
    (Answer.UNREACHABLE, False, True, False),
    (Answer.TIMED_OUT, False, True, False),
    (Answer.GATEWAY, False, False, False),  # a proxy answered; its connection still serves
    (Answer.RETRY, True, False, False),
    (Answer.UNAUTHORIZED, True, True, True),  # keep the batch, look the token up again
])
def test_what_a_failure_says_of_the_server_and_the_connection(
        answer: Answer, reached: bool, reconnect: bool, relogin: bool) -> None:
    step = planner().after(answer, 10)
    assert (step.delivered, step.refused) == (0, 0) and step.failed
    assert (step.reached, step.reconnect, step.relogin) == (reached, reconnect, relogin)


def test_a_slow_server_gets_half_the_batch_until_it_answers_again() -> None:
    answers = iter([Answer.TIMED_OUT, Answer.TIMED_OUT] + [Answer.DELIVERED] * 100)
    p = planner(batch_max=16)
    run = drive(p, items(64), lambda body: next(answers))
    sizes = [len(json.loads(b)) for b in run.bodies]
    # Halved per timeout, then doubled per delivery; each batch was encoded while the one
    # before it was in flight, so it has the cap of that moment (4 after the first delivery).
    assert sizes[:6] == [16, 8, 4, 4, 8, 16]
    assert run.delivered == [f"r-{i}" for i in range(64)] and p.cap == 16


def test_the_batch_encoded_early_is_used_only_while_it_still_fits() -> None:
    p = planner(batch_max=10)
    pending = items(30)
    p.prepare(pending, 10)
    for _ in range(10):
        pending.popleft()
    ready = p.next_batch(pending)
    assert ready.n == 10 and ready.body == encode(list(pending)[:10])
    p.prepare(pending, 0)
    p.after(Answer.TIMED_OUT, 10)  # the cap fell under what was encoded: encode afresh
    assert p.next_batch(pending).n == 5
    p.prepare(pending, 0)
    p.forget()  # the pending messages changed under it
    pending[0]["data"] = {"changed": 1}
    assert json.loads(p.next_batch(pending).body)[0]["data"] == {"changed": 1}


def test_a_message_json_cannot_carry_is_a_value_error_before_anything_is_sent() -> None:
    pending = items(3)
    pending[1]["data"] = {"name": "\udcff"}  # a lone surrogate: os.fsdecode of non-UTF-8 bytes
    with pytest.raises(ValueError):
        planner().next_batch(pending)


def test_an_outage_is_reported_once_after_warn_after_and_its_end_once() -> None:
    outage = Outage(warn_after=10.0)
    assert [outage.failed(t) for t in (100.0, 105.0, 110.0, 111.0, 500.0)] == [False, False, True, False, False]
    assert outage.delivered() is True and outage.delivered() is False
    assert outage.failed(600.0) is False  # a new outage counts from its own first failure
    assert outage.failed(601.0, at_once=True) is True and outage.failed(602.0, at_once=True) is False


@pytest.mark.parametrize("env", [
    {},
    {"PULSEBOARD_TOKEN": "t"},
    {"PULSEBOARD_URL": "http://127.0.0.1:1"},
    {"PULSEBOARD_URL": "/services/pulseboard/", "PULSEBOARD_TOKEN": "t"},  # only a browser can resolve it
])
def test_missing_settings_are_not_configured(env: dict[str, str]) -> None:
    with pytest.raises(NotConfigured):  # the sender says so at once: waiting can't make a setting appear
        discover_for_kernel(env=env)


def test_a_token_file_that_is_missing_is_not_a_missing_setting(tmp_path: Path) -> None:
    env = {"PULSEBOARD_URL": "http://127.0.0.1:1", "PULSEBOARD_TOKEN_FILE": str(tmp_path / "gone")}
    with pytest.raises(DiscoveryError) as info:  # a rotator between writes: it may come back
        discover(env=env)
    assert not isinstance(info.value, NotConfigured)


def test_retry_jitter_leaves_a_seeded_random_alone() -> None:
    # A training run seeds `random` for a reproducible result; our retries draw from their own.
    random.seed(7)
    p = BatchPlanner()  # as the sender makes it: with its jitter
    assert all(p.after(Answer.UNREACHABLE, 1).wait > 0 for _ in range(5))
    waits = [backoff_delay(3), backoff(3)]  # the reference client's and the server's Redis link's
    assert all(w > 0 for w in waits)
    same = random.Random(7)
    assert [random.random() for _ in range(3)] == [same.random() for _ in range(3)]
