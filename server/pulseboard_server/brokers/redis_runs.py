"""Deleting channels and keeping run records on Redis (every node sees the same).

    <prefix>:{<ch>}:meta          after a delete: the new epoch at seq 0 (the log and keys are gone)
    <prefix>:runs:{<project>}     hash: run name -> the run record's JSON
    <prefix>:projects             set of projects holding runs (bounds the total)

A delete publishes `"<new epoch> "` (no envelope) on the channel's pub/sub channel: every
node subscribed to it reads the channel again and tells its clients `reset`.
"""

from __future__ import annotations

import json
from typing import Any

from pulseboard.protocol import TOO_LARGE, PulseboardError

from .base import MAX_RUNS, MAX_RUNS_PER_PROJECT, new_epoch
from .redis_scripts import Keys

# KEYS: meta, log, keys. ARGV: new epoch, pub/sub channel, "1" for SPUBLISH.
# Returns the old top seq (0: the channel had nothing, and nothing changed).
DELETE = """
local top = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if top == 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0)
if ARGV[3] == '1' then
  redis.call('SPUBLISH', ARGV[2], ARGV[1] .. ' ')
else
  redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ')
end
return top
"""

# KEYS: the project's hash. ARGV: name, record JSON, the per-project limit.
# Returns 1 when kept, 0 when the project is full.
PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def runs_key(prefix: str, project: str) -> str:
    return f"{prefix}:runs:{{{project}}}"


async def delete_channel(client: Any, prefix: str, cluster: bool, ch: str) -> bool:
    keys = Keys.of(prefix, ch)
    top = await client.eval(DELETE, 3, keys.meta, keys.log, keys.keys, new_epoch(), keys.live,
                            "1" if cluster else "0")
    await client.srem(f"{prefix}:channels", ch)
    return int(top) > 0


async def put_run(client: Any, prefix: str, project: str, name: str, record: dict[str, Any]) -> None:
    projects = f"{prefix}:projects"
    if not await client.sismember(projects, project):
        # A rough total bound (no project bigger than the per-project one; this many projects at most).
        if await client.scard(projects) >= MAX_RUNS // 100:
            raise PulseboardError(TOO_LARGE, f"the server holds {MAX_RUNS // 100} projects, the limit: "
                                  "delete old runs first")
        await client.sadd(projects, project)
    raw = json.dumps(record, separators=(",", ":"))
    ok = await client.eval(PUT, 1, runs_key(prefix, project), name, raw, MAX_RUNS_PER_PROJECT)
    if not int(ok):
        raise PulseboardError(TOO_LARGE, f"project {project!r} holds {MAX_RUNS_PER_PROJECT} runs, the limit: "
                              "delete old runs (pulseboard delete) first")


async def get_run(client: Any, prefix: str, project: str, name: str) -> dict[str, Any] | None:
    raw = await client.hget(runs_key(prefix, project), name)
    return json.loads(raw) if raw else None


async def list_runs(client: Any, prefix: str, project: str) -> list[dict[str, Any]]:
    raws = await client.hvals(runs_key(prefix, project))
    if not raws:
        return []
    out: list[dict[str, Any]] = json.loads("[" + ",".join(raws) + "]")  # one parse for all
    return out


async def delete_run(client: Any, prefix: str, project: str, name: str) -> bool:
    key = runs_key(prefix, project)
    gone = bool(await client.hdel(key, name))
    if gone and not await client.hlen(key):
        await client.srem(f"{prefix}:projects", project)
    return gone


__all__ = ["delete_channel", "delete_run", "get_run", "list_runs", "put_run"]
