"""`pulseboard publish CHANNEL` reads JSON lines from stdin when no JSON argument is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.channels import read_all
from harness.servers import ServerProcess
from harness.tokens import token


def run_publish(server: ServerProcess, channel: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PULSEBOARD_URL=server.url, PULSEBOARD_TOKEN=token())
    return subprocess.run([sys.executable, "-m", "pulseboard_server", "publish", channel], input=stdin,
                          env=env, capture_output=True, text=True, timeout=120)


def test_stdin_json_lines(server: ServerProcess) -> None:
    lines = "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(3000))
    lines += '\n[{"step": 3000}, {"step": 3001}]\n'  # a blank line is ignored; a list is one message per row
    done = run_publish(server, "stdin.a", lines)
    assert done.returncode == 0, done.stderr
    assert "published 3002 messages" in done.stderr
    msgs = read_all(server.url, "stdin.a")  # what the store keeps: the newest, at least --history
    assert len(msgs) >= 1000 and msgs[-1]["seq"] == 3002
    assert [m["data"]["step"] for m in msgs] == list(range(3002 - len(msgs), 3002))


def test_stdin_bad_lines_are_reported_and_skipped(server: ServerProcess) -> None:
    done = run_publish(server, "stdin.b", '{"a": 1}\nnot json\n[1, 2]\n{"a": 2}\n')
    assert done.returncode == 1
    assert "line 2 skipped: not a JSON object" in done.stderr and "line 3 skipped" in done.stderr
    assert "Traceback" not in done.stderr
    assert [m["data"] for m in read_all(server.url, "stdin.b")] == [{"a": 1}, {"a": 2}]


def test_stdin_without_a_server_says_what_to_do(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEBOARD_", "JUPYTERHUB_"))}
    done = subprocess.run([sys.executable, "-m", "pulseboard_server", "publish", "stdin.c"], input="{}\n",
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "PULSEBOARD_URL" in done.stderr and "Traceback" not in done.stderr
