"""Lua scripts that make each shared limit one atomic step inside Redis.

Every check reads and writes in the same script, so two replicas can never both take the
last token or the last turn slot. Time comes from Redis ``TIME``: the replicas' clocks do
not matter. Floats cross the Lua boundary as strings (Redis truncates Lua numbers to
integers in replies).
"""

from __future__ import annotations

# KEYS[1] bucket hash {tokens, ts}; ARGV[1] refill per second, ARGV[2] burst.
# Returns {1, tokens_left} when a token was taken, {0, seconds_until_next_token}.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local allowed = 0
local answer
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
  answer = tokens
else
  answer = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'ts', string.format('%.6f', now))
-- Once the bucket would be full again it is the same as no bucket: let it go.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.6f', answer)}
"""

# KEYS[1] sorted set of slot ids scored by expiry (ms); ARGV[1] max slots, ARGV[2] slot
# id, ARGV[3] slot ttl (ms). Expired slots (a replica crashed holding them) are dropped
# first. Returns {1, slots_now_held} or {0, slots_held}.
ACQUIRE_SLOT = """
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= limit then
  return {0, held}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
-- Every slot has the same ttl, so the newest one expires last: the set goes with it.
redis.call('PEXPIRE', KEYS[1], ttl + 1000)
return {1, held + 1}
"""

# KEYS[1] the slots set; ARGV[1] slot id, ARGV[2] ttl (ms). Pushes a live slot's expiry
# out for a long turn. Returns 1 if the slot was still held, 0 if it had expired/gone.
REFRESH_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl + 1000 then
  redis.call('PEXPIRE', KEYS[1], ttl + 1000)
end
return 1
"""

# KEYS[1] the slots set. Live slots (not yet expired) without changing anything.
COUNT_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
