"""A logging process keeps every message, once and in order, while the server is killed and restarted.

CI mode: 20,000 messages, 2 restarts (SIGTERM, then kill -9). `PULSEBOARD_LONG=1`: 100,000
messages and 10 restarts, alternating SIGTERM and kill -9 (the issue's full run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.channels import read_all
from harness.logs import log_across_restarts
from harness.servers import RedisProcess, ServerProcess

LONG = os.environ.get("PULSEBOARD_LONG") == "1"
N, RESTARTS, RATE = (100_000, 10, 10_000) if LONG else (20_000, 2, 5_000)


def broker_url(kind: str, redis_factory: Callable[..., RedisProcess], tmp_path: Path) -> str:
    if kind == "redis":
        return redis_factory().url
    return f"sqlite:///{tmp_path / 'pulseboard.db'}"  # the durable default store


@pytest.mark.timeout(900 if LONG else 300)
@pytest.mark.parametrize("kind", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_log_survives_server_restarts(kind: str, redis_factory: Callable[..., RedisProcess],
                                      tmp_path: Path) -> None:
    args = ("--broker", broker_url(kind, redis_factory, tmp_path), "--history", str(N))
    stopped, out, err, status = log_across_restarts(args, "restart.a", N, RATE, RESTARTS, 900 if LONG else 300)
    assert status == 0, f"logger failed: {out} {err}"
    server = ServerProcess(*args, port=stopped.port).start()  # read back from a fresh server
    try:
        msgs = read_all(server.url, "restart.a", page=5000)
    finally:
        server.stop()
    assert [m["seq"] for m in msgs] == list(range(1, N + 1))
    assert [m["data"]["i"] for m in msgs] == list(range(N))
    assert '"dropped": 0' in out and '"rejected": 0' in out
