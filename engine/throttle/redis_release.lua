-- Release: free a lease's slot and fold its hold time into the average;
-- with refund, put the rate token back instead (the delivery never ran).
-- KEYS: leases, starts, bucket, hold
-- ARGV: lease id ("" for a lease without a slot), refund (1/0), rate
--       count (0: none), rate period ms, average weight, history TTL ms
local leases, starts, bucket, hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, refund = ARGV[1], ARGV[2] == '1'
local count, period = tonumber(ARGV[3]), tonumber(ARGV[4])
local alpha, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()

if id ~= '' then
  local start = tonumber(redis.call('ZSCORE', starts, id))
  local held = redis.call('ZREM', leases, id)
  redis.call('ZREM', starts, id)
  -- A lease that had expired was not held to its end by a live process:
  -- its time says nothing about deliveries.
  if held == 1 and start and not refund then
    local h = math.max(0, now - start)
    local avg = tonumber(redis.call('GET', hold))
    if avg then
      avg = avg + alpha * (h - avg)
    else
      avg = h
    end
    redis.call('SET', hold, string.format('%d', math.floor(avg + 0.5)), 'PX', keep)
  end
end

if refund and count > 0 then
  local tk = tokens(bucket, count, period, now)
  save_tokens(bucket, math.min(count, tk + 1), count, period, now)
end
return 1
