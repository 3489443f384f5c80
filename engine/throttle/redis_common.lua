-- Shared by the throttle scripts: each is this file followed by its own.
-- Every time is in milliseconds of the Redis server's clock (TIME), never
-- a client's. The keys of one throttle key share a hash tag, so a script
-- touches one Cluster slot:
--   leases  sorted set, lease id -> expiry
--   starts  sorted set, lease id -> start
--   bucket  hash {tk = tokens, ts = when tk was true}; absent = full
--   hold    string, moving average of how long leases were held

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- tokens returns what the bucket holds at now: what it held at ts plus
-- the refill since, at most count.
local function tokens(bucket, count, period, now)
  local v = redis.call('HMGET', bucket, 'tk', 'ts')
  local tk, ts = tonumber(v[1]), tonumber(v[2])
  if not tk or not ts then
    return count
  end
  -- A clock behind ts (a failover to a node whose clock lags) refills
  -- nothing rather than draining the bucket.
  local elapsed = math.max(0, now - ts)
  return math.min(count, tk + elapsed * count / period)
end

-- save_tokens stores the bucket; a full bucket is deleted, and a partial
-- one expires when it would be full again, so idle keys vanish.
local function save_tokens(bucket, tk, count, period, now)
  if tk >= count then
    redis.call('DEL', bucket)
    return
  end
  redis.call('HSET', bucket, 'tk', string.format('%.17g', tk), 'ts', string.format('%d', now))
  redis.call('PEXPIRE', bucket, math.ceil((count - tk) * period / count))
end

-- conc_wait estimates when the oldest live lease ends: its start plus the
-- average hold time (dflt with no history), never less than floor.
local function conc_wait(leases, starts, hold, now, floor, dflt)
  local avg = tonumber(redis.call('GET', hold)) or dflt
  -- Expired leases may still be listed (Peek removes nothing): skip them.
  local oldest = nil
  local offset = 0
  while not oldest do
    local page = redis.call('ZRANGE', starts, offset, offset + 15, 'WITHSCORES')
    if #page == 0 then
      break
    end
    for i = 1, #page, 2 do
      local exp = tonumber(redis.call('ZSCORE', leases, page[i]))
      if exp and exp > now then
        oldest = tonumber(page[i + 1])
        break
      end
    end
    offset = offset + 16
  end
  if not oldest then
    return floor
  end
  return math.max(floor, math.ceil(oldest + avg - now))
end

-- refusal returns the limit that refuses an acquire now and how long to
-- wait (the longer wait when both do), or nil. inuse counts live leases,
-- tk the tokens in the bucket; the slack absorbs float rounding of the
-- refill.
local function refusal(conc, inuse, count, period, tk, leases, starts, hold, now, floor, dflt)
  local class, wait = nil, 0
  if conc > 0 and inuse >= conc then
    class, wait = 'concurrency', conc_wait(leases, starts, hold, now, floor, dflt)
  end
  if count > 0 and tk < 1 - 1e-9 then
    local w = math.max(1, math.ceil((1 - tk) * period / count))
    if w > wait then
      class, wait = 'rate', w
    end
  end
  return class, wait
end

-- extend_ttl makes key live at least ttl more milliseconds, never
-- shortening it (another process may use a longer lease TTL). GT would
-- never set a TTL on a key without one, so a key just created (existed
-- false) gets a plain PEXPIRE.
local function extend_ttl(key, ttl, existed)
  if existed then
    redis.call('PEXPIRE', key, ttl, 'GT')
  else
    redis.call('PEXPIRE', key, ttl)
  end
end
