"""A logging process keeps every message, once and in order, while the server is killed and restarted.

CI mode: 20,000 messages, 2 restarts (SIGTERM, then kill -9). `PULSEBOARD_LONG=1`: 100,000
messages and 10 restarts, alternating SIGTERM and kill -9 (the issue's full run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from logsupport import read_all, top_seq

from support import RedisProcess, ServerProcess, token, wait_until

LONG = os.environ.get("PULSEBOARD_LONG") == "1"
N, RESTARTS, RATE = (100_000, 10, 10_000) if LONG else (20_000, 2, 5_000)
SCRIPT = Path(__file__).with_name("log_script.py")


def broker_url(kind: str, redis_factory: Callable[..., RedisProcess], tmp_path: Path) -> str:
    if kind == "redis":
        return redis_factory().url
    return f"sqlite:///{tmp_path / 'pulseboard.db'}"  # the durable default store


@pytest.mark.timeout(900 if LONG else 300)
@pytest.mark.parametrize("kind", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_log_survives_server_restarts(kind: str, redis_factory: Callable[..., RedisProcess],
                                      tmp_path: Path) -> None:
    args = ("--broker", broker_url(kind, redis_factory, tmp_path), "--history", str(N))
    server = ServerProcess(*args).start()
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    logger = subprocess.Popen([sys.executable, str(SCRIPT), "restart.a", str(N), str(RATE), "600"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for k in range(RESTARTS):
            target = (k + 1) * N // (RESTARTS + 2)  # spread the restarts over the run
            wait_until(lambda t=target, url=server.url: top_seq(url, "restart.a") >= t, 120, 0.05,
                       what=f"seq {target} before restart {k + 1}")
            if k % 2 == 0:
                server.terminate()
            else:
                server.kill()
            server = ServerProcess(*args, port=server.port).start()
        out, err = logger.communicate(timeout=600)
        assert logger.returncode == 0, f"logger failed: {out} {err}"
    finally:
        if logger.poll() is None:
            logger.kill()
        server.stop()
    server = ServerProcess(*args, port=server.port).start()  # read back from a fresh server
    try:
        msgs = read_all(server.url, "restart.a", page=5000)
    finally:
        server.stop()
    assert [m["seq"] for m in msgs] == list(range(1, N + 1))
    assert [m["data"]["i"] for m in msgs] == list(range(N))
    assert '"dropped": 0' in out and '"rejected": 0' in out
