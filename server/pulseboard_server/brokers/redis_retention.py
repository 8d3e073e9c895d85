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
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from .redis_scripts import Keys

log = logging.getLogger("pulseboard.redis")

CHUNK = 1000  # entries one script call looks at (bounds the time Redis is busy)
SCAN_COUNT = 500  # channel names per SSCAN step

# KEYS: log, keys. ARGV: cutoff (unix seconds), chunk.
# Drops the head entries whose envelope ts < cutoff (at most `chunk`); returns how many went.
TRIM_OLD = """
local cutoff = tonumber(ARGV[1])
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
local keep = nil
local dropped = 0
for _, e in ipairs(entries) do
  local ts = tonumber(string.match(e[2][2], '"seq":%d+,"ts":([^,}]+)'))
  if ts == nil or ts >= cutoff then
    keep = tonumber(string.match(e[1], '%-(%d+)$'))
    break
  end
  dropped = dropped + 1
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
return dropped
"""


async def trim_channel(script: Any, prefix: str, ch: str, cutoff: float) -> int:
    """Drop `ch`'s messages older than `cutoff` from the head; how many went."""
    keys = Keys.of(prefix, ch)
    total = 0
    while True:
        n = int(await script(keys=[keys.log, keys.keys], args=[repr(cutoff), CHUNK]))
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
