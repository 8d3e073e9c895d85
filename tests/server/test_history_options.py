"""`serve --history N --retention AGE` reach every broker, with one meaning: a real server per broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness.servers import RedisProcess, ServerProcess, wait_until
from harness.tokens import token

AUTH = {"Authorization": f"Bearer {token()}"}


@pytest.fixture(scope="module")
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def history(server: ServerProcess) -> dict[str, Any]:
    r = httpx.get(server.url + "/history", params={"ch": "opt", "since": 0, "limit": 5}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_serve_applies_history_and_retention(
    kind: str, request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]
) -> None:
    url = {"memory": "memory://", "sqlite": "sqlite://"}.get(kind) or request.getfixturevalue("redis_proc").url
    server = server_factory("--broker", url, "--history", "5", "--retention", "3s")
    now = time.time()
    old = [{"ch": "opt", "data": {"i": i}, "ts": now - 1000 + i} for i in range(2)]
    new = [{"ch": "opt", "data": {"i": i}, "ts": now + 3600 + i} for i in range(2, 5)]
    r = httpx.post(server.url + "/publish", json=old + new, headers=AUTH, timeout=30)
    assert r.json() == {"seqs": [1, 2, 3, 4, 5]}
    # within the count, so only --retention can drop 1 and 2
    body = wait_until(lambda: (b := history(server))["first"] == 3 and b, timeout=30, what="retention")
    assert [m["data"]["i"] for m in body["msgs"]] == [2, 3, 4]
    more = [{"ch": "opt", "data": {"i": i}, "ts": now + 3600 + i} for i in range(5, 9)]
    assert httpx.post(server.url + "/publish", json=more, headers=AUTH, timeout=30).status_code == 200
    body = history(server)  # --history 5: the count cap holds once the publish is answered
    assert (body["seq"], body["first"]) == (9, 5)
    assert [m["data"]["i"] for m in body["msgs"]] == [4, 5, 6, 7, 8]
