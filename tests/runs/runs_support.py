"""Runs with known configs and losses on a real server, for the browser tests of the runs table."""

from __future__ import annotations

import math

import httpx

from harness.charts import publish
from harness.servers import ServerProcess
from harness.tokens import token

LRS = {"a": 0.1, "b": 0.01, "c": 0.001}


def make_runs(server: ServerProcess, project: str = "exp") -> None:
    """Runs a, b (finished) and c (running) with lr 0.1 / 0.01 / 0.001 and 40 steps of loss each."""
    headers = {"Authorization": f"Bearer {token()}"}
    for name, lr in LRS.items():
        body = {"project": project, "name": name, "op": "start", "config": {"lr": lr, "batch": 64}, "tags": ["sweep"]}
        assert httpx.post(server.url + "/runs", json=body, headers=headers).status_code == 200
        losses = [round(2 * math.exp(-s * lr * 3) + 0.1, 4) for s in range(40)]
        publish(server.url, [{"ch": f"{project}.{name}", "data": {"step": s, "loss": v}} for s, v in enumerate(losses)])
    for name in ("a", "b"):
        httpx.post(server.url + "/runs", json={"project": project, "name": name, "op": "finish"}, headers=headers)
