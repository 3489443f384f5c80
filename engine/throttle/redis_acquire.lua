-- Acquire: drop expired leases, then take a concurrency slot and a rate
-- token, both or neither.
-- KEYS: leases, starts, bucket, hold
-- ARGV: lease id, concurrency (0: none), rate count (0: none), rate
--       period ms, lease TTL ms, wait floor ms, default hold ms
-- Returns {1} when granted, {0, class, wait ms} when refused.
local leases, starts, bucket, hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local conc, count, period = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, floor, dflt = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()

local inuse = 0
if conc > 0 then
  local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, d in ipairs(dead) do
    redis.call('ZREM', leases, d)
    redis.call('ZREM', starts, d)
  end
  inuse = redis.call('ZCARD', leases)
end
local tk = 0
if count > 0 then
  tk = tokens(bucket, count, period, now)
end

local class, wait = refusal(conc, inuse, count, period, tk, leases, starts, hold, now, floor, dflt)
if class then
  return {0, class, wait}
end
if count > 0 then
  save_tokens(bucket, math.max(0, tk - 1), count, period, now)
end
if conc > 0 then
  redis.call('ZADD', leases, now + ttl, id)
  redis.call('ZADD', starts, now, id)
  extend_ttl(leases, ttl, inuse > 0)
  extend_ttl(starts, ttl, inuse > 0)
end
return {1}
