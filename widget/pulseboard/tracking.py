"""Runs: `pulseboard.init(project, ...)` -> `Run`, W&B/trackio-shaped (init, log, finish, config).

A run is the channel `<project>.<name>` (what `run.log` writes, through the background
sender of `pulseboard.log`) plus a small record the server keeps (`POST runs`, read back
with `GET runs?project=`). Its status is true:

- `running`: a daemon thread posts a heartbeat every `heartbeat` seconds
  (`PULSEBOARD_HEARTBEAT`, default 15, 0.1-20);
- `finished`: `run.finish()`, the end of a `with` block, or a clean exit of the process;
- `crashed`: an uncaught exception (in a `with` block or in the main thread), or SIGTERM;
- `stalled`: (the server's view) no heartbeat for 3 intervals: `kill -9`, a lost machine,
  a kernel that died. Default: within 45 s.

Standard library only.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

from .publish import PublishError, _coerce_map, request_json

NAME_RE = re.compile(r"[A-Za-z0-9_:\-]{1,100}")
MAX_CONFIG_BYTES = 16 * 1024  # the server's bound too
DEFAULT_HEARTBEAT = 15.0

ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fancy", "gentle", "golden", "happy",
    "hazy", "jolly", "keen", "lively", "lucky", "mellow", "misty", "noble", "plucky", "proud", "quiet", "rapid",
    "rosy", "rustic", "silent", "snowy", "solar", "steady", "sunny", "swift", "tidy", "vivid", "warm", "wild",
)
NOUNS = (
    "badger", "brook", "canyon", "cedar", "comet", "cloud", "delta", "dune", "ember", "falcon", "fern", "fjord",
    "glacier", "grove", "harbor", "heron", "lagoon", "lark", "maple", "meadow", "mesa", "nebula", "orchid", "otter",
    "pine", "prairie", "quartz", "raven", "reef", "ridge", "river", "sparrow", "summit", "tundra", "willow", "zephyr",
)


def generated_name(seed: str | None = None) -> str:
    """A readable name like `brisk-otter-4821`, fixed for the run (from `seed`, else random)."""
    h = hashlib.blake2b((seed or uuid.uuid4().hex).encode(), digest_size=8).digest()
    n = int.from_bytes(h, "big")
    return f"{ADJECTIVES[n % len(ADJECTIVES)]}-{NOUNS[(n // 64) % len(NOUNS)]}-{(n // 4096) % 10000:04d}"


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise PublishError("bad_request", f"{what} must be 1-100 characters from A-Z a-z 0-9 _ : - (no dots, "
                           f"no spaces), not {value!r:.120}")
    return value


def check_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config as JSON values (numpy scalars become numbers), or a clear `PublishError`."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        if hasattr(config, "__dict__"):  # an argparse.Namespace, a dataclass instance
            config = vars(config)
        else:
            raise PublishError("bad_request", f"config must be a dict, not {type(config).__name__}")
    try:
        plain = _coerce_map(config, 0)
    except PublishError as e:
        raise PublishError("bad_request", f"config: {e.detail}") from None
    size = len(json.dumps(plain, separators=(",", ":")))
    if size > MAX_CONFIG_BYTES:
        raise PublishError("too_large", f"config is {size} bytes as JSON, over the {MAX_CONFIG_BYTES}-byte limit: "
                           "keep hyperparameters there, log data with run.log")
    return plain


def heartbeat_interval(value: float | None) -> float:
    if value is None:
        raw = os.environ.get("PULSEBOARD_HEARTBEAT")
        try:
            value = float(raw) if raw else DEFAULT_HEARTBEAT
        except ValueError:
            raise PublishError("bad_request", f"PULSEBOARD_HEARTBEAT must be seconds, not {raw!r}") from None
    if not 0.1 <= value <= 20.0:
        raise PublishError("bad_request", "the heartbeat interval must be between 0.1 and 20 seconds")
    return float(value)


class Api:
    """JSON calls to the server's HTTP API with the discovered URL and token."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        from .discovery import DiscoveryError, discover_for_kernel

        try:
            found_url, found_token = discover_for_kernel(url, token)
        except DiscoveryError as e:
            raise PublishError(e.code, e.detail) from None
        self.url, self.token, self.timeout = found_url.rstrip("/"), found_token, timeout

    def call(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return request_json(self.url, self.token, path, body, timeout or self.timeout, path.split("?")[0])


class Run:
    """One training run: `log` its metrics, `finish` it (or use it as a context manager)."""

    def __init__(self, project: str, name: str, config: dict[str, Any], tags: list[str], api: Api,
                 heartbeat: float) -> None:
        self.project, self.name, self.config, self.tags = project, name, config, tags
        self.channel = f"{project}.{name}"
        self.heartbeat = heartbeat
        self.status = "running"
        self._api = api
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Run(project={self.project!r}, name={self.name!r}, status={self.status!r})"

    def _start(self) -> None:
        self._api.call("runs", {"project": self.project, "name": self.name, "op": "start", "config": self.config,
                                "tags": self.tags, "host": socket.gethostname(), "heartbeat": self.heartbeat})
        _active.add(self)
        self._thread = threading.Thread(target=self._beat, name=f"pulseboard-run-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._done.wait(self.heartbeat):
            try:
                self._api.call("runs", {"project": self.project, "name": self.name, "op": "heartbeat"},
                               timeout=max(2.0, self.heartbeat))
            except PublishError as e:
                if e.code == "not_found":  # the server lost the record (memory:// restarted): start again
                    try:
                        self._api.call("runs", {"project": self.project, "name": self.name, "op": "start",
                                                "config": self.config, "tags": self.tags,
                                                "host": socket.gethostname(), "heartbeat": self.heartbeat})
                    except PublishError:
                        pass

    def log(self, data: Mapping[str, Any] | Any, step: Any = None) -> None:
        """Log metrics on the run's channel (as `pulseboard.log`: never blocks, never raises)."""
        from .sender import log

        log(self.channel, data, step=step)

    def finish(self, exit_code: int = 0) -> None:
        """Deliver what was logged, then mark the run finished (`exit_code` != 0: crashed)."""
        self._end("finish" if exit_code == 0 else "crash")

    def _end(self, op: str, flush_timeout: float = 10.0) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._done.set()
        _active.discard(self)
        from .sender import flush

        flush(flush_timeout)
        self.status = "finished" if op == "finish" else "crashed"
        try:
            self._api.call("runs", {"project": self.project, "name": self.name, "op": op}, timeout=5.0)
        except PublishError as e:
            print(f"pulseboard: could not mark run {self.channel} {self.status}: {e.detail}", file=sys.stderr)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._end("finish" if kind is None else "crash")


_active: set[Run] = set()
_last: Run | None = None
_hooked = False


def _install_hooks() -> None:
    """Once per process: an uncaught exception or SIGTERM marks every open run crashed, a clean
    exit finishes them."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        for run in list(_active):
            run._end("crash", flush_timeout=5.0)
        previous_hook(kind, exc, tb)

    sys.excepthook = excepthook
    atexit.register(_at_exit)
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        for run in list(_active):
            run._end("crash", flush_timeout=2.0)
        if callable(previous):
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        signal.signal(signum, signal.SIG_DFL)  # die of the signal, as without us
        os.kill(os.getpid(), signum)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread of the main interpreter
        pass


def _at_exit() -> None:
    for run in list(_active):
        run._end("finish")


def init(
    project: str,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    heartbeat: float | None = None,
) -> Run:
    """Start a run: its record on the server (config, tags, host, start) and its heartbeat.

    `name` is generated when missing (`brisk-otter-4821`); the run writes channel
    `<project>.<name>`, which the token must be allowed to publish to. Raises
    `PublishError` with the reason for a bad name, a config that is not JSON or too big,
    or a server that refuses or can't be reached."""
    global _last
    check_name(project, "project")
    name = check_name(name, "name") if name is not None else generated_name()
    tag_list = list(tags or [])
    if not all(isinstance(t, str) for t in tag_list):
        raise PublishError("bad_request", "tags must be strings")
    run = Run(project, name, check_config(config), tag_list, Api(url, token), heartbeat_interval(heartbeat))
    _install_hooks()
    run._start()
    _last = run
    return run


def finish(exit_code: int = 0) -> None:
    """Finish the run `init` last started (as `wandb.finish`)."""
    if _last is not None:
        _last.finish(exit_code)


def delete(*channels: str, url: str | None = None, token: str | None = None) -> list[str]:
    """Remove channels' data (and a run's record with its channel); needs a publish grant on each.
    Returns the channels that had something to delete."""
    if not channels:
        raise PublishError("bad_request", "name the channels to delete")
    deleted: list[str] = Api(url, token).call("delete", {"ch": list(channels)})["deleted"]
    return deleted


def runs(project: str, url: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
    """The project's run records the token may read (`GET runs?project=`)."""
    check_name(project, "project")
    out: list[dict[str, Any]] = Api(url, token).call(f"runs?project={project}")["runs"]
    return out


__all__ = ["Run", "delete", "finish", "generated_name", "init", "runs"]
