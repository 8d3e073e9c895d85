"""The benchmarks run end to end at a tiny size (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_fanout_compares_every_server() -> None:
    out = run(str(BENCH / "fanout.py"), "--clients", "3", "--channels", "2", "--rate", "20", "--seconds", "1",
              "--procs", "1")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| bare websockets.broadcast()", "| pulseboard, memory broker", "| pulseboard, Redis (+ redis-server)",
        "| python-socketio + AsyncRedisManager (+ redis-server)",
    ]
    assert all(" 0.00% " in r for r in rows), out  # nothing lost at this size
    assert "load average" in out


def test_connections_prints_memory_per_connection() -> None:
    out = run(str(BENCH / "connections.py"), "--clients", "20", "--channels", "3", "--procs", "1")
    assert "20 idle subscribed WebSocket connections" in out and "KiB per connection" in out
