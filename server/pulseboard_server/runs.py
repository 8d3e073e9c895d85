"""Runs: a small, durable record per training run, next to its channel `<project>.<name>`.

The sender (`pulseboard.init`) posts `POST runs` with an `op`: `start` (config, tags, host,
heartbeat interval), `heartbeat` (every interval while the process lives), `finish` or
`crash`. The broker keeps the record (the store durably, Redis for every node, memory for
this process). `GET runs?project=P` answers the records whose channel the token may read,
with `status` as it is now: a `running` run whose heartbeat is older than
STALL_BEATS intervals is `stalled` (the process vanished: `kill -9`, a lost machine).

Bounds: a config is a JSON object of at most MAX_CONFIG_BYTES, at most MAX_TAGS tags of
MAX_TAG_CHARS, the heartbeat interval in [MIN_HEARTBEAT, MAX_HEARTBEAT] (so `stalled`
comes within STALL_BEATS * MAX_HEARTBEAT = 60 s), runs per project: see brokers.base.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pulseboard.protocol import FORBIDDEN, NOT_FOUND, TOO_LARGE, PulseboardError, bad_request, check_channel

from .api import authenticate, node_of, read_json

NAME_RE = re.compile(r"[A-Za-z0-9_:\-]{1,100}")  # no '.': `<project>.<name>` splits one way
MAX_CONFIG_BYTES = 16 * 1024
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_HOST_CHARS = 255
MIN_HEARTBEAT, MAX_HEARTBEAT, DEFAULT_HEARTBEAT = 0.1, 20.0, 15.0
STALL_BEATS = 3
OPS = ("start", "heartbeat", "finish", "crash")
FINAL = ("finished", "crashed")


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise bad_request(f"{what} must be 1-100 characters from A-Z a-z 0-9 _ : - (no dots), not {value!r:.120}")
    return value


def run_channel(project: str, name: str) -> str:
    return f"{project}.{name}"


def run_of_channel(ch: str) -> tuple[str, str] | None:
    """(project, name) when `ch` is a run's channel."""
    project, dot, name = ch.partition(".")
    if dot and NAME_RE.fullmatch(project) and NAME_RE.fullmatch(name):
        return project, name
    return None


def check_config(config: object) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise bad_request(f"'config' must be a JSON object, not {type(config).__name__}")
    size = len(json.dumps(config, separators=(",", ":"), allow_nan=False))
    if size > MAX_CONFIG_BYTES:
        raise PulseboardError(TOO_LARGE, f"config is {size} bytes as JSON, over the {MAX_CONFIG_BYTES}-byte "
                              "limit: keep hyperparameters there, log data and artifacts elsewhere")
    return config


def check_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_CHARS for t in tags):
        raise bad_request(f"'tags' must be a list of strings of 1-{MAX_TAG_CHARS} characters")
    if len(tags) > MAX_TAGS:
        raise PulseboardError(TOO_LARGE, f"{len(tags)} tags, over the limit of {MAX_TAGS}")
    return list(dict.fromkeys(tags))


def check_heartbeat(value: object) -> float:
    if value is None:
        return DEFAULT_HEARTBEAT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
        MIN_HEARTBEAT <= value <= MAX_HEARTBEAT
    ):
        raise bad_request(f"'heartbeat' must be seconds between {MIN_HEARTBEAT} and {MAX_HEARTBEAT}")
    return float(value)


def status_now(rec: dict[str, Any], now: float) -> str:
    """The status as it is at `now`: a running run whose heartbeats stopped is stalled."""
    status = str(rec.get("status", "running"))
    if status == "running" and now - float(rec.get("updated", 0)) > STALL_BEATS * float(
        rec.get("heartbeat", DEFAULT_HEARTBEAT)
    ):
        return "stalled"
    return status


async def post_run(request: Request) -> Response:
    grants = await authenticate(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request('body is {"project": ..., "name": ..., "op": "start" | "heartbeat" | "finish" | "crash"}')
    project, name = check_name(body.get("project"), "'project'"), check_name(body.get("name"), "'name'")
    op = body.get("op")
    if op not in OPS:
        raise bad_request(f"'op' must be one of {', '.join(OPS)}")
    channel = run_channel(project, name)
    grants.check_publish(check_channel(channel))
    node = node_of(request)
    broker = node.broker
    now = time.time()
    if op == "start":
        host = body.get("host", "")
        if not isinstance(host, str) or len(host) > MAX_HOST_CHARS:
            raise bad_request(f"'host' must be a string of at most {MAX_HOST_CHARS} characters")
        rec: dict[str, Any] = {
            "project": project, "name": name, "channel": channel, "config": check_config(body.get("config")),
            "tags": check_tags(body.get("tags")), "host": host, "status": "running", "start": now, "end": None,
            "updated": now, "heartbeat": check_heartbeat(body.get("heartbeat")),
        }
    else:
        old = await broker.run_get(project, name)
        if old is None:
            raise PulseboardError(NOT_FOUND, f"no run {name!r} in project {project!r}: start it first")
        if old.get("status") in FINAL:  # a heartbeat racing finish(), or a second finish: the first word stays
            return JSONResponse({"run": public(old, now)})
        rec = {**old, "updated": now}
        if op != "heartbeat":
            rec["status"], rec["end"] = ("finished" if op == "finish" else "crashed"), now
    await broker.run_put(project, name, rec)
    return JSONResponse({"run": public(rec, now)})


def public(rec: dict[str, Any], now: float) -> dict[str, Any]:
    return {**rec, "status": status_now(rec, now)}


async def get_runs(request: Request) -> Response:
    """The project's runs the token may read, in the order they were first started; built from
    each record's stored encoding plus its status now (10,000 runs: no JSON encoding at all)."""
    grants = await authenticate(request, allow_ticket=True)
    project = check_name(request.query_params.get("project"), "'project'")
    entries = await node_of(request).broker.run_entries(project)
    body = runs_json(entries, time.time(), None if grants.covers(f"{project}.*") else grants.can_read)
    return Response(body, media_type="application/json")


def runs_json(entries: list[tuple[dict[str, Any], str]], now: float, readable: Callable[[str], bool] | None) -> str:
    """`{"runs": [...]}` from stored encodings, each closed with its status at `now` (`status_now`,
    inlined: this loop is most of the time of a 10,000-run answer)."""
    parts = []
    for rec, encoded in entries:
        if readable is not None and not readable(str(rec.get("channel", ""))):
            continue
        status = rec.get("status", "running")
        if status == "running" and now - rec.get("updated", 0) > STALL_BEATS * rec.get("heartbeat", DEFAULT_HEARTBEAT):
            status = "stalled"
        parts.append(encoded + STATUS_JSON.get(status, '"running"}'))
    return '{"runs":[' + ",".join(parts) + "]}"


STATUS_JSON = {s: f'"{s}"}}' for s in ("running", "finished", "crashed", "stalled")}


async def delete(request: Request) -> Response:
    """Remove channels' data (and the run record of a run's channel); a publish grant on each."""
    grants = await authenticate(request)
    body = await read_json(request)
    raw = body.get("ch") if isinstance(body, dict) else None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise bad_request('body is {"ch": ["channel", ...]}')
    if len(raw) > 1000:
        raise PulseboardError(TOO_LARGE, "at most 1000 channels per delete")
    chs = list(dict.fromkeys(check_channel(c) for c in raw))
    for ch in chs:  # every grant checked before anything is deleted
        if not grants.can_publish(ch):
            raise PulseboardError(FORBIDDEN, f"deleting {ch!r} needs a publish grant on it")
    broker = node_of(request).broker
    deleted = []
    for ch in chs:
        gone = await broker.delete(ch)
        run = run_of_channel(ch)
        if run is not None and await broker.run_delete(*run):
            gone = True
        if gone:
            deleted.append(ch)
    return JSONResponse({"deleted": deleted})
