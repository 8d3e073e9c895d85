"""`pulseboard serve` and `pulseboard agent` with --broker redis://..."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from harness.servers import PULSEBOARD, RedisProcess, ServerProcess, free_port
from harness.tokens import SECRET
from harness.ws import open_ws, recv_envelopes, subscribe


def test_serve_with_unreachable_redis_is_a_one_line_error() -> None:
    port = free_port()
    env = dict(os.environ, PULSEBOARD_SECRET=SECRET)
    out = subprocess.run(
        [*PULSEBOARD, "serve", "--port", str(free_port()), "--collect-interval", "0",
         "--broker", f"redis://127.0.0.1:{port}/0"],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert err and err[-1].startswith("pulseboard: error: cannot reach broker redis://127.0.0.1:")
    assert "Traceback" not in out.stderr


def test_agent_with_unreachable_redis_is_a_one_line_error() -> None:
    out = subprocess.run(
        [*PULSEBOARD, "agent", "--broker", f"redis://127.0.0.1:{free_port()}/0"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith("pulseboard: error: cannot reach broker")
    assert "Traceback" not in out.stderr


async def test_agent_publishes_straight_into_redis(
    server_factory: Callable[..., ServerProcess], redis_server: RedisProcess
) -> None:
    node = server_factory("--broker", redis_server.url)
    async with await open_ws(node) as ws:
        await subscribe(ws, {"sys.agent-test": None})
        agent = subprocess.Popen(
            [*PULSEBOARD, "agent", "--broker", redis_server.url, "--interval", "0.1",
             "--channel", "sys.agent-test"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            got = await recv_envelopes(ws, 3, timeout=20)
        finally:
            agent.terminate()
            _, agent_err = agent.communicate(timeout=10)
    assert [e["seq"] for e in got] == [1, 2, 3]  # numbered by Redis, delivered by the node
    # Nothing on stderr but our own lines: redis-py 8 warned about the retry policy's class on
    # every connection (a sync Retry given to the asyncio client).
    for said in (agent_err, node.output()):
        assert "Warning" not in said and "Traceback" not in said, said[-2000:]
    for e in got:
        assert e["ch"] == "sys.agent-test"
        for field in ("cpu_percent", "mem_percent", "load1", "net_rx_bps"):
            assert isinstance(e["data"][field], (int, float))

