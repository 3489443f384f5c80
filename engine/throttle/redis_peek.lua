-- Peek: a key's usage, changing nothing (run with EVALSHA_RO).
-- KEYS: leases, starts, bucket, hold
-- ARGV: concurrency (0: none), rate count (0: none), rate period ms,
--       wait floor ms, default hold ms
-- Returns {in use, tokens (a string: a Lua number would be truncated),
-- class ("" when nothing refuses), wait ms}.
local leases, starts, bucket, hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local conc, count, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local floor, dflt = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

-- Expired leases are not removed here (read-only): count the live ones.
local inuse = redis.call('ZCOUNT', leases, '(' .. string.format('%d', now), '+inf')
local tk = 0
if count > 0 then
  tk = tokens(bucket, count, period, now)
end
local class, wait = refusal(conc, inuse, count, period, tk, leases, starts, hold, now, floor, dflt)
return {inuse, string.format('%.17g', tk), class or '', wait}
