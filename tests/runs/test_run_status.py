"""Run statuses from real processes: a clean exit, an uncaught exception, SIGTERM, and
`kill -9` (stalled once the heartbeat stops; a short PULSEBOARD_HEARTBEAT keeps it quick)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.servers import ServerProcess, wait_until
from harness.tokens import token

SCRIPT = Path(__file__).with_name("run_script.py")


@pytest.fixture
def spawn(server: ServerProcess) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def run(name: str, mode: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PULSEBOARD_URL": server.url, "PULSEBOARD_TOKEN": token(),
               "PULSEBOARD_HEARTBEAT": "0.3"}
        p = subprocess.Popen([sys.executable, str(SCRIPT), name, mode], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def runs(server: ServerProcess) -> dict[str, dict[str, Any]]:
    got = httpx.get(server.url + "/runs?project=proc", headers={"Authorization": f"Bearer {token()}"}).json()
    return {r["name"]: r for r in got["runs"]}


def status_of(server: ServerProcess, name: str) -> str | None:
    rec = runs(server).get(name)
    return None if rec is None else str(rec["status"])


def wait_status(server: ServerProcess, name: str, status: str) -> dict[str, Any]:
    wait_until(lambda: status_of(server, name) == status, 30, what=f"run {name} to be {status}")
    return runs(server)[name]


def test_clean_exit_is_finished(server: ServerProcess, spawn: Any) -> None:
    p = spawn("clean", "clean")
    assert p.wait(60) == 0
    rec = wait_status(server, "clean", "finished")
    assert rec["end"] >= rec["start"] and rec["config"] == {"mode": "clean"}
    assert httpx.get(server.url + "/history?ch=proc.clean", headers={"Authorization": f"Bearer {token()}"}
                     ).json()["msgs"][0]["data"] == {"loss": 1.0, "step": 0}  # logs delivered before the end


def test_uncaught_exception_is_crashed(server: ServerProcess, spawn: Any) -> None:
    p = spawn("err", "error")
    assert p.wait(60) == 1
    assert "RuntimeError: boom" in (p.stderr.read() if p.stderr else "")  # the traceback still shows
    wait_status(server, "err", "crashed")


def test_exception_in_a_with_block_is_crashed(server: ServerProcess, spawn: Any) -> None:
    p = spawn("w", "with-error")
    assert p.wait(60) == 1
    wait_status(server, "w-with", "crashed")
    wait_status(server, "w", "crashed")


def test_sigterm_is_crashed_and_the_process_still_dies_of_it(server: ServerProcess, spawn: Any) -> None:
    p = spawn("term", "sigterm")
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    wait_status(server, "term", "running")
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == -signal.SIGTERM
    wait_status(server, "term", "crashed")


def test_kill_9_is_stalled_then_a_heartbeat_is_missing(server: ServerProcess, spawn: Any) -> None:
    p = spawn("gone", "kill")
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    wait_status(server, "gone", "running")
    p.kill()
    p.wait(10)
    rec = wait_status(server, "gone", "stalled")
    assert rec["end"] is None and rec["heartbeat"] == 0.3
