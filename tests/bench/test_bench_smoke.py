"""The benchmarks run end to end at a tiny size (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.redis  # the bench starts redis-server for its Redis rows
def test_fanout_compares_every_server() -> None:
    out = run(str(BENCH / "fanout.py"), "--clients", "3", "--channels", "2", "--rate", "20", "--seconds", "1",
              "--procs", "1")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| bare websockets.broadcast()", "| pulseboard, memory broker", "| pulseboard, sqlite:// store (the default)",
        "| pulseboard, Redis (+ redis-server)",
        "| python-socketio + AsyncRedisManager (+ redis-server)",
    ]
    assert all(" 0.00% " in r for r in rows), out  # nothing lost at this size
    assert "browser clients" in out  # the default: clients offer deflate as Chromium does
    assert "load average" in out


def test_connections_prints_memory_per_connection() -> None:
    # More clients than the per-subject connection limit (128): the bench's one subject must be let in.
    out = run(str(BENCH / "connections.py"), "--clients", "150", "--channels", "3", "--procs", "1")
    assert "150 idle subscribed WebSocket connections" in out
    kinds = [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| ") and "KiB |" in line]
    assert kinds == ["| browser", "| plain"], out  # browser-like clients, and the plain baseline


def test_history_prints_every_figure() -> None:
    out = run(str(BENCH / "history.py"), "--tiny")  # a tenth of the smoke sizes; --full is the issue's
    for figure in ("msgs/s", "one body of ~1 MB", "history_range points=2000", "serve start to /healthz",
                   "exact resume of 10,000"):
        assert figure in out, out


@pytest.mark.redis  # the bench starts redis-server for its Redis run
def test_log_prints_every_figure_and_loses_nothing() -> None:
    out = run(str(BENCH / "log.py"), "--calls", "2000", "--deliver", "2000", "--run", "2000", "--restarts", "1")
    assert "caller cost of log()" in out and "msgs/s" in out
    assert out.count("lost 0  duplicated 0") == 2, out  # redis and sqlite, across a restart


def test_relay_prints_latency_and_kernel_cpu() -> None:
    out = run(str(BENCH / "relay.py"), "--seconds", "2")
    assert "publish -> IOPub at 100 msgs/s, relayed" in out and "(baseline)" in out, out
    assert "kernel CPU, relaying 1,000 msgs/s" in out, out


def test_runs_prints_both_figures() -> None:
    out = run(str(BENCH / "runs.py"), "--runs", "300", "--table-runs", "100", "--seconds", "1")
    assert "GET runs,    300 runs" in out and "table,   100 runs live" in out, out


def test_watch_prints_every_figure_beside_its_baseline() -> None:
    out = run(str(BENCH / "watch.py"), "--runs", "2", "--steps", "100", "--tags", "5", "--seconds", "2",
              "--latency-steps", "10")
    for figure in ("read + tbevents.parse only", "TensorBoard's RawEventFileLoader", "pulseboard.log of the same",
                   "pulseboard watch: read, parsed, published", "pulseboard watch (polling 0.2 s)",
                   "nothing written", "of one core (scalars delivered"):
        assert figure in out, out


def test_deflate_compares_the_three_ways() -> None:
    out = run(str(BENCH / "deflate.py"), "--clients", "3", "--frames", "2")
    ways = [line.split(" | ")[2] for line in out.splitlines() if line.startswith("| ") and "µs" in line]
    assert ways == ["plain", "shared (now)", "per-client (before)"] * 3, out


@pytest.mark.redis  # starts redis-server
def test_redis_batch_compares_batched_with_one_by_one() -> None:
    out = run(str(BENCH / "redis_batch.py"), "--messages", "200", "--batch", "50")
    assert "publish_each (before)" in out and "publish_many (batched)" in out, out
