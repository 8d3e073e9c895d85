"""`--retention` on redis://, as on the other brokers: drop each channel's messages older than the retention.

Stream entry ids are `0-<seq>` (not times), so the age of an entry is its envelope's
`ts`. Every node sweeps every known channel (the `<prefix>:channels` set) every
`sweep_period(retention)` seconds: one script call per channel looks at most CHUNK of
the oldest entries, finds the first one to keep and drops the ones before it with
`XTRIM MINID` (and their idempotency keys), atomically. The stream head stays the
channel's `first` (READ derives it from there), so resume answers stay exact: a resume
from before the new head is `recovered: false`, as after a count trim. Sweeps on several
nodes are safe: each call is atomic and only ever moves the head forward.
Like the store, trimming stops at the first entry that is new enough, so history never
has holes (an old `ts` after a newer one waits until the head reaches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from .redis_scripts import Keys

log = logging.getLogger("pulseboard.redis")

CHUNK = 1000  # entries one script call looks at (bounds the time Redis is busy)
SCAN_COUNT = 500  # channel names per SSCAN step

# KEYS: log, keys, meta. ARGV: cutoff (unix seconds), chunk.
# Drops the head entries whose envelope ts < cutoff (at most `chunk`); returns how many went.
TRIM_OLD = """
local cutoff = tonumber(ARGV[1])
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
local keep = nil
local dropped = 0
local freed = 0
for _, e in ipairs(entries) do
  local ts = tonumber(string.match(e[2][2], '"seq":%d+,"ts":([^,}]+)'))
  if ts == nil or ts >= cutoff then
    keep = tonumber(string.match(e[1], '%-(%d+)$'))
    break
  end
  dropped = dropped + 1
  freed = freed + #e[2][2]
end
if dropped == 0 then
  return 0
end
if keep == nil then
  keep = tonumber(string.match(entries[#entries][1], '%-(%d+)$')) + 1
end
redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. keep)
if KEYS[2] then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. keep)
end
if KEYS[3] and redis.call('HINCRBY', KEYS[3], 'bytes', -freed) < 0 then
  redis.call('HSET', KEYS[3], 'bytes', 0)
end
return dropped
"""

# KEYS: log, keys, meta. ARGV: share (0..1). Drops that share of the oldest entries (at least
# one, never the newest); returns the bytes freed. For the cap on all channels' bytes.
TRIM_SHARE = """
local n = redis.call('XLEN', KEYS[1])
local k = math.max(1, math.floor(n * tonumber(ARGV[1])))
if k > n - 1 then
  k = n - 1
end
if k < 1 then
  return 0
end
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', k)
local freed = 0
for _, e in ipairs(entries) do
  freed = freed + #e[2][2]
end
local keep = tonumber(string.match(entries[#entries][1], '%-(%d+)$')) + 1
redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. keep)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. keep)
if redis.call('HINCRBY', KEYS[3], 'bytes', -freed) < 0 then
  redis.call('HSET', KEYS[3], 'bytes', 0)
end
return freed
"""
CAP_ROUNDS = 8  # share trims per check at most (each drops at most half of every channel)
CAP_EVERY = 30.0  # seconds between checks of the total (other nodes publish too)


async def trim_channel(script: Any, prefix: str, ch: str, cutoff: float) -> int:
    """Drop `ch`'s messages older than `cutoff` from the head; how many went."""
    keys = Keys.of(prefix, ch)
    total = 0
    while True:
        n = int(await script(keys=[keys.log, keys.keys, keys.meta], args=[repr(cutoff), CHUNK]))
        total += n
        if n < CHUNK:
            return total
        await asyncio.sleep(0)  # a long backlog: let publishes through between chunks


async def sweep(client: Any, script: Any, prefix: str, retention: float) -> int:
    """One pass over every known channel; how many messages went."""
    cutoff = time.time() - retention
    total = 0
    async for name in client.sscan_iter(f"{prefix}:channels", count=SCAN_COUNT):
        ch = name.decode() if isinstance(name, bytes) else str(name)
        total += await trim_channel(script, prefix, ch, cutoff)
    return total


async def sweep_loop(client: Any, prefix: str, retention: float, every: float) -> None:
    """Sweep every `every` seconds until cancelled; Redis errors wait for the next round."""
    script = client.register_script(TRIM_OLD)
    while True:
        await asyncio.sleep(every)
        try:
            n = await sweep(client, script, prefix, retention)
        except (RedisError, OSError) as e:
            log.info("retention sweep failed (%s); trying again in %.0f s", e, every)
            continue
        if n:
            log.debug("retention: dropped %d messages older than %.0f s", n, retention)


async def channel_bytes(client: Any, prefix: str) -> dict[str, int]:
    """Every known channel's history bytes (the `bytes` field of its meta hash)."""
    names: list[str] = []
    async for name in client.sscan_iter(f"{prefix}:channels", count=SCAN_COUNT):
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    out: dict[str, int] = {}
    for i in range(0, len(names), SCAN_COUNT):
        part = names[i:i + SCAN_COUNT]
        values = await asyncio.gather(*(client.hget(Keys.of(prefix, ch).meta, "bytes") for ch in part))
        out.update({ch: int(v or 0) for ch, v in zip(part, values, strict=True)})
    return out


async def cap_total(client: Any, script: Any, prefix: str, max_bytes: int) -> int:
    """Over `max_bytes` in all channels: drop every channel's oldest share until under 90%
    (like the store's cap). Bytes freed."""
    sizes = await channel_bytes(client, prefix)
    used = sum(sizes.values())
    if used <= max_bytes:
        return 0
    target, freed = 0.9 * max_bytes, 0
    for _ in range(CAP_ROUNDS):
        share, round_freed = min(0.5, (used - target) / used + 0.01), 0
        for ch in sizes:
            keys = Keys.of(prefix, ch)
            round_freed += int(await script(keys=[keys.log, keys.keys, keys.meta], args=[repr(share)]))
        freed, used = freed + round_freed, used - round_freed
        if used <= target or not round_freed:
            break
    if freed:
        log.info("redis history over --max-history-bytes (%d): dropped the oldest messages, now %d",
                 max_bytes, used)
    return freed


async def cap_loop(client: Any, prefix: str, max_bytes: int, wake: asyncio.Event) -> None:
    """Check the total every CAP_EVERY seconds, or when `wake` is set (a node published 1/8 of it)."""
    script = client.register_script(TRIM_SHARE)
    while True:
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin one before Python 3.11
            await asyncio.wait_for(wake.wait(), CAP_EVERY)
        wake.clear()
        try:
            await cap_total(client, script, prefix, max_bytes)
        except (RedisError, OSError) as e:
            log.info("history byte cap check failed (%s); trying again later", e)
