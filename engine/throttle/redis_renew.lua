-- Renew: push the expiry of leases still held by a live process. A lease
-- that expired meanwhile is not brought back (its slot may have been
-- given away): it is removed and reported lost.
-- KEYS: leases, starts
-- ARGV: lease TTL ms, lease ids...
-- Returns the lost lease ids.
local leases, starts = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
local now = now_ms()
local lost = {}
for i = 2, #ARGV do
  local exp = tonumber(redis.call('ZSCORE', leases, ARGV[i]))
  if exp and exp > now then
    redis.call('ZADD', leases, 'XX', now + ttl, ARGV[i])
  else
    redis.call('ZREM', leases, ARGV[i])
    redis.call('ZREM', starts, ARGV[i])
    lost[#lost + 1] = ARGV[i]
  end
end
extend_ttl(leases, ttl, true)
extend_ttl(starts, ttl, true)
return lost
