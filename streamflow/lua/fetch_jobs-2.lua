--[[
  fetch_jobs: claim up to COUNT new entries, highest priority level first (strict priority),
  within the queue's rate limit. The only place a worker claims new entries: pause, the rate
  limit, strict priority and the worker's free capacity hold whatever state the worker is in.

  KEYS[1]        meta hash (paused flag, rate limit settings, limited-until time)
  KEYS[2]        limiter zset: one member per job granted in the current window
  KEYS[3 .. ]    one stream per priority level, highest first (declared tail)

  ARGV[1]  group
  ARGV[2]  consumer
  ARGV[3]  count: how many entries the worker has room for (> 0)
  ARGV[4]  now (ms) of the worker, for the limited-until time it wrote itself

  Returns  0 when the queue is paused; a negative number -W when rate limited (W: ms to wait
           before asking again); else a flat list {level index (0-based), entries, ...} where
           entries is the XREADGROUP reply for that stream: {{id, {f1, v1, ...}}, ...},
           ended by {-1, last id of level 1, ..., last id of level L} when every level was
           drained: an idle worker waits with XREAD from exactly those ids (it claims
           nothing), so an entry added after this call wakes it.
  Events   none

  The limit is a sliding log: a job is granted only when fewer than `rl_max` were granted in the
  last `rl_ms` + `rl_margin_ms` (the margin absorbs the gap between grant and handler start).
  Grants are stamped with the server's clock (TIME), not the worker's: a worker whose call was
  delayed on its way must not record its grants in the past, where they would expire early.
]]
local rcall = redis.call
local meta_key, limiter_key = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local remaining = tonumber(ARGV[3])
local now = tonumber(ARGV[4])

local meta = rcall("HMGET", meta_key, "paused", "limited_until", "rl_max", "rl_ms", "rl_margin_ms")
if meta[1] == "1" then
  return 0
end
local limited_until = tonumber(meta[2] or "0")
if limited_until > now then
  return -(limited_until - now)
end
local rl_max = tonumber(meta[3] or "0")
local window = 0
if rl_max > 0 then
  local clock = rcall("TIME")
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  window = tonumber(meta[4]) + tonumber(meta[5] or "0")
  rcall("ZREMRANGEBYSCORE", limiter_key, "-inf", now - window)
  local allowed = rl_max - rcall("ZCARD", limiter_key)
  if allowed <= 0 then
    local oldest = rcall("ZRANGE", limiter_key, 0, 0, "WITHSCORES")
    return -math.max(tonumber(oldest[2]) + window - now, 1)
  end
  if allowed < remaining then remaining = allowed end
end

local out = {}
local granted = {}
local last_ids = {}
for i = 3, #KEYS do
  if remaining <= 0 then break end
  local wanted = remaining
  local reply = rcall("XREADGROUP", "GROUP", group, consumer, "COUNT", wanted,
    "STREAMS", KEYS[i], ">")
  local entries = reply and reply[1][2] or {}
  if #entries > 0 then
    out[#out + 1] = i - 3
    out[#out + 1] = entries
    remaining = remaining - #entries
    if rl_max > 0 then
      for _, entry in ipairs(entries) do
        granted[#granted + 1] = now
        granted[#granted + 1] = (i - 3) .. ":" .. entry[1]
      end
    end
  end
  if #entries < wanted then  -- this level is drained: its last entry is the one to wait after
    if #entries > 0 then
      last_ids[i - 2] = entries[#entries][1]
    else
      local head = rcall("XREVRANGE", KEYS[i], "+", "-", "COUNT", 1)
      last_ids[i - 2] = head[1] and head[1][1] or "0-0"
    end
  end
end
if #granted > 0 then
  rcall("ZADD", limiter_key, unpack(granted))
  rcall("PEXPIRE", limiter_key, window)
end
if #last_ids == #KEYS - 2 then
  out[#out + 1] = -1
  for _, id in ipairs(last_ids) do out[#out + 1] = id end
end
return out
