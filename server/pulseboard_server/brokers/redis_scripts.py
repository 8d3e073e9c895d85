"""Key layout and the Lua scripts of the Redis broker.

Every key of one channel carries the hash tag `{<channel>}` so that, on a
Redis Cluster, all of them (and the channel's shard pub/sub channel) live in
one slot and a script can touch them atomically:

    <prefix>:{<ch>}:meta   hash: epoch (random string), seq (the top seq), bytes
                           (the length of the envelopes' JSON in the stream)
    <prefix>:{<ch>}:log    stream: entry id 0-<seq>, field m = the envelope JSON,
                           trimmed to the last --history entries and to
                           --max-channel-bytes (its newest entry always stays)
    <prefix>:{<ch>}:live   pub/sub channel (SPUBLISH on a cluster):
                           "<epoch> <envelope JSON>"
    <prefix>:{<ch>}:keys   sorted set: idempotency key -> its seq (score), trimmed
                           with the stream to the last --history seqs
    <prefix>:channels      set of channel names (not slot-bound; a hint for `channels`)
    <prefix>:claim:<key>   one-time claims (SET NX PX)

Channel names can't contain braces (see protocol.CHANNEL_RE), so the hash
tag is always the whole name.
"""

from __future__ import annotations

from dataclasses import dataclass

# Both publish scripts end their trimming so: the stream up to `cut` goes, with its keys,
# and the channel's byte count becomes `bytes`.
CUT = """if cut then
  redis.call('XTRIM', KEYS[2], 'MINID', '0-' .. (cut + 1))
  if bytes < 0 then
    bytes = 0
  end
  redis.call('HSET', KEYS[1], 'bytes', bytes)
  if KEYS[3] then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (cut + 1))
  end
end
"""

# Publish one message: numbering, epoch, history and fan-out in one atomic step.
# KEYS: meta, log, keys. ARGV: candidate epoch, history, envelope prefix, envelope
# suffix, pub/sub channel, "1" for SPUBLISH, idempotency key ('' or absent = none;
# the keys key may then be left out too), byte cap of the channel's history ('0' = none).
# Returns {epoch, seq, created}, or {epoch, seq, 0, envelope JSON} when the key
# was already numbered (nothing is written or published then).
PUBLISH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local created = 0
local key = ARGV[7] or ''
if not epoch then
  epoch = ARGV[1]
  created = 1
  redis.call('DEL', KEYS[2])
  if KEYS[3] then
    redis.call('DEL', KEYS[3])
  end
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'bytes', 0)
elseif key ~= '' then
  local old = redis.call('ZSCORE', KEYS[3], key)
  if old then
    local hit = redis.call('XRANGE', KEYS[2], '0-' .. old, '0-' .. old)
    if #hit > 0 then
      return {epoch, tonumber(old), 0, hit[1][2][2]}
    end
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local raw = ARGV[3] .. seq .. ARGV[4]
redis.call('XADD', KEYS[2], '0-' .. seq, 'm', raw)
if key ~= '' then
  redis.call('ZADD', KEYS[3], seq, key)
end
-- hold the count and byte caps: drop the oldest entries, never the newest
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', #raw)
local n = redis.call('XLEN', KEYS[2])
local maxn = tonumber(ARGV[2])
local maxb = tonumber(ARGV[8] or '0')
local cut = nil
local from = '-'
while n > 1 and (n > maxn or (maxb > 0 and bytes > maxb)) do
  local e = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 1)[1]
  cut = tonumber(string.match(e[1], '%-(%d+)$'))
  from = '(' .. e[1]
  bytes = bytes - #e[2][2]
  n = n - 1
end
""" + CUT + """local payload = epoch .. ' ' .. raw
if ARGV[6] == '1' then
  redis.call('SPUBLISH', ARGV[5], payload)
else
  redis.call('PUBLISH', ARGV[5], payload)
end
return {epoch, seq, created}
"""

# Publish a run of messages of ONE channel, as PUBLISH would one after another, in one
# script call (a batch of `log()` was one call per message: most of Redis' time went to
# starting scripts and trimming the stream one entry at a time). Trimming happens once, after
# the run: the script is atomic, so nobody sees the stream in between; a repeated key still
# answers its first message only while the count cap would have kept it.
# KEYS: meta, log, keys. ARGV: candidate epoch, history, envelope prefix (up to the seq),
# pub/sub channel, "1" for SPUBLISH, byte cap ('0' = none), then per message its envelope
# suffix and its idempotency key ('' = none).
# Returns {epoch, created, r1, r2, ...}: r is the new seq, or the kept envelope's JSON when
# the key was numbered before (nothing is written or published for it then).
PUBLISH_MANY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local created = 0
if not epoch then
  epoch = ARGV[1]
  created = 1
  redis.call('DEL', KEYS[2])
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'bytes', 0)
end
local maxn = tonumber(ARGV[2])
local head = ARGV[3]
local live = ARGV[4]
local pub = 'PUBLISH'
if ARGV[5] == '1' then
  pub = 'SPUBLISH'
end
local maxb = tonumber(ARGV[6])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local added = 0
local out = {epoch, created}
for i = 7, #ARGV, 2 do
  local key = ARGV[i + 1]
  local old = nil
  if key ~= '' then
    old = redis.call('ZSCORE', KEYS[3], key)
    if old and tonumber(old) <= seq - maxn then
      old = nil  -- pushed out of the history by this run already
    end
  end
  local hit = nil
  if old then
    hit = redis.call('XRANGE', KEYS[2], '0-' .. old, '0-' .. old)[1]
  end
  if hit then
    out[#out + 1] = hit[2][2]
  else
    seq = seq + 1
    local raw = head .. seq .. ARGV[i]
    redis.call('XADD', KEYS[2], '0-' .. seq, 'm', raw)
    if key ~= '' then
      redis.call('ZADD', KEYS[3], seq, key)
    end
    added = added + #raw
    redis.call(pub, live, epoch .. ' ' .. raw)
    out[#out + 1] = seq
  end
end
redis.call('HSET', KEYS[1], 'seq', seq)
-- hold the count and byte caps: drop the oldest entries, never the newest
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', added)
local n = redis.call('XLEN', KEYS[2])
local cut = nil
local from = '-'
local excess = math.min(n - maxn, n - 1)
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', excess)
  for _, e in ipairs(gone) do
    bytes = bytes - #e[2][2]
  end
  from = '(' .. gone[#gone][1]
  cut = tonumber(string.match(gone[#gone][1], '%-(%d+)$'))
  n = n - #gone
end
while n > 1 and maxb > 0 and bytes > maxb do
  local some = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 64)
  if #some == 0 then
    break
  end
  for _, e in ipairs(some) do
    if n <= 1 or bytes <= maxb then
      break
    end
    cut = tonumber(string.match(e[1], '%-(%d+)$'))
    from = '(' .. e[1]
    bytes = bytes - #e[2][2]
    n = n - 1
  end
end
""" + CUT + """return out
"""

# Read a channel's position and (part of) its history in one consistent step.
# KEYS: meta, log. ARGV: candidate epoch ('' = don't create the channel),
# mode ('none' | 'after' | 'last' | 'range'), a, b.
#   after: entries with seq > a, at most b of them (b = 0: all)
#   last:  the last a entries
#   range: entries with a <= seq <= b
# Returns {epoch or '', top, first, created, id1, raw1, id2, raw2, ...}.
READ = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local created = 0
if not epoch then
  if ARGV[1] == '' then
    return {'', 0, 1, 0}
  end
  epoch = ARGV[1]
  created = 1
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local top = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local first = top + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then
  first = tonumber(string.match(head[1][1], '%-(%d+)$'))
end
local out = {epoch, top, first, created}
local entries = {}
local mode = ARGV[2]
if mode == 'after' then
  if ARGV[4] ~= '0' then
    entries = redis.call('XRANGE', KEYS[2], '0-' .. (tonumber(ARGV[3]) + 1), '+', 'COUNT', ARGV[4])
  else
    entries = redis.call('XRANGE', KEYS[2], '0-' .. (tonumber(ARGV[3]) + 1), '+')
  end
elseif mode == 'last' then
  if tonumber(ARGV[3]) > 0 then
    local rev = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
    for i = #rev, 1, -1 do
      entries[#entries + 1] = rev[i]
    end
  end
elseif mode == 'range' then
  entries = redis.call('XRANGE', KEYS[2], '0-' .. ARGV[3], '0-' .. ARGV[4])
end
for _, e in ipairs(entries) do
  out[#out + 1] = e[2][2]
end
return out
"""


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of one channel's keys under `prefix`."""

    meta: str
    log: str
    live: str
    keys: str  # idempotency keys of the messages in history

    @classmethod
    def of(cls, prefix: str, ch: str) -> Keys:
        base = f"{prefix}:{{{ch}}}"
        return cls(base + ":meta", base + ":log", base + ":live", base + ":keys")


def channel_of_live(prefix: str, name: str) -> str | None:
    """The channel name inside a `:live` pub/sub channel name, or None."""
    head = prefix + ":{"
    if name.startswith(head) and name.endswith("}:live"):
        return name[len(head) : -len("}:live")]
    return None
