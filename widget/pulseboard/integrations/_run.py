"""The one place an integration gets its run from.

A run is a `pulseboard.init()` run (a record on the server with its config and a true status,
logging through the background sender, so the training step never blocks), or, when given a
channel or when the server can't take the record, just its channel fed through `pulseboard.log`
(`LogRun`: same attributes, `project`, `name`, `channel`, `config`, `log(data, step)`,
`finish(exit_code)`).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..protocol import check_channel
from ..sender import Sender, default_sender

_BAD = re.compile(r"[^A-Za-z0-9_:\-]+")


class RunLike(Protocol):
    project: str
    name: str
    channel: str
    config: dict[str, Any]

    def log(self, data: Mapping[str, Any], step: Any = None) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


def run_name(name: str | None) -> str:
    """`name` in the run-name alphabet (A-Z a-z 0-9 _ : -, other runs of characters become `-`),
    or the start time (`20261206-041500`) when there is none."""
    if not name:
        return time.strftime("%Y%m%d-%H%M%S")
    return _BAD.sub("-", name).strip("-")[:100] or time.strftime("%Y%m%d-%H%M%S")


def plain_config(config: Any) -> dict[str, Any]:
    """A framework's hyperparameters as JSON-ready values (anything else as its text)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        config = vars(config) if hasattr(config, "__dict__") else {"value": config}
    return {str(k): _plain(v) for k, v in config.items()}


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalars
        return _plain(v.item())
    return str(v)


class LogRun:
    """A run as a channel: `log` goes through the background sender (returns at once)."""

    def __init__(self, project: str, name: str, channel: str, config: dict[str, Any], sender: Sender | None) -> None:
        self.project, self.name, self.channel, self.config = project, name, check_channel(channel), config
        self._sender = sender

    def log(self, data: Mapping[str, Any], step: Any = None) -> None:
        (self._sender or default_sender()).log(self.channel, data, step)

    def finish(self, exit_code: int = 0) -> None:
        """Nothing to close: the sender delivers what is queued (and flushes at exit)."""


def start_run(project: str, name: str | None = None, config: Any = None, channel: str | None = None,
              sender: Sender | None = None, tags: list[str] | None = None) -> RunLike:
    """The run an integration logs to.

    With a `channel` (or a `sender` of its own) it is that channel fed through the sender, with
    no run record. Otherwise it is a `pulseboard.init` run: a record on the server (config, tags,
    status, heartbeat) and channel `<project>.<name>`. When the server can't take the record
    now, the run logs to its channel alone (said once on stderr): training never stops for its
    metrics, and `log()` keeps what it is given until the server is back.
    """
    plain = plain_config(config)
    if channel is None and sender is None:
        from ..publish import PublishError
        from ..tracking import init

        try:
            return init(project, name=run_name(name) if name else None, config=plain, tags=tags)
        except PublishError as e:
            print(f"pulseboard: no run record for project {project!r} ({e.detail}); logging to its channel only",
                  file=sys.stderr, flush=True)
    name = run_name(name)
    return LogRun(project, name, channel or f"{project}.{name}", plain, sender)


def numbers(logs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numeric entries of a framework's metrics dict (tensors and numpy scalars as numbers)."""
    out: dict[str, Any] = {}
    for k, v in (logs or {}).items():
        if isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, (int, float)):
            out[k] = v
        elif (hasattr(v, "item") and getattr(v, "ndim", 1) == 0) or getattr(v, "shape", None) == ():
            out[k] = v.item()
    return out
