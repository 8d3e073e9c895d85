"""Reading back what a real server holds: a channel's messages, its top seq, a metric."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from harness.servers import ServerProcess
from harness.tokens import token


def get_json(url: str, path: str) -> Any:
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token()})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def top_seq(url: str, ch: str) -> int:
    """The channel's top seq (0 before its first message or while the server is down)."""
    try:
        return int(get_json(url, f"/history?ch={ch}&limit=1")["seq"])
    except (urllib.error.URLError, OSError):
        return 0


def read_all(url: str, ch: str, page: int = 1000) -> list[dict[str, Any]]:
    """Every envelope the channel holds, oldest first."""
    out: list[dict[str, Any]] = []
    while True:
        msgs = get_json(url, f"/history?ch={ch}&since={out[-1]['seq'] if out else 0}&limit={page}")["msgs"]
        if not msgs:
            return out
        out.extend(msgs)


def metric(server: ServerProcess, name: str, labels: str | None = None) -> float:
    """One sample of the server's Prometheus metrics (0 when absent): the one with exactly
    `labels` (`'{transport="poll"}'`, or `""` for none), or the first of any labels."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    which = r"(?:\{[^}]*\})?" if labels is None else re.escape(labels)
    m = re.search(rf"^{re.escape(name)}{which} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0
