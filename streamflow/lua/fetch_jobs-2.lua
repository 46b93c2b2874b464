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
           entries holds that stream's claimed entries flat: {id, F, f1, v1, ..., id, F, ...}
           (F: how many field names and values follow; one table per level, not two per
           entry: each table of a reply costs Redis a deferred length and a few lookups,
           13 % of this script's cost when every entry had its own two), ended by
           {-1, last id of level 1, ..., last id of level L} when every level was drained: an
           idle worker waits with XREAD from exactly those ids (it claims nothing), so an
           entry added after this call wakes it.
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

local out, n = {}, 0
local granted = {}
local drained = 0  -- levels read to their end; the last ids are looked up only if all were
local last_ids = {}
for i = 3, #KEYS do
  if remaining <= 0 then break end
  local wanted = remaining
  local reply = rcall("XREADGROUP", "GROUP", group, consumer, "COUNT", wanted,
    "STREAMS", KEYS[i], ">")
  local entries = reply and reply[1][2] or {}
  local count = #entries
  if count > 0 then
    local flat, m = {}, 0
    for e = 1, count do
      local entry = entries[e]
      local fields = entry[2]
      local size = #fields
      flat[m + 1] = entry[1]
      flat[m + 2] = size
      for j = 1, size do flat[m + 2 + j] = fields[j] end
      m = m + 2 + size
    end
    out[n + 1] = i - 3
    out[n + 2] = flat
    n = n + 2
    remaining = remaining - count
    if rl_max > 0 then
      for e = 1, count do
        granted[#granted + 1] = now
        granted[#granted + 1] = (i - 3) .. ":" .. entries[e][1]
      end
    end
  end
  if count < wanted then  -- this level is drained: its last entry is the one to wait after
    drained = drained + 1
    last_ids[i - 2] = count > 0 and entries[count][1] or false
  end
end
if #granted > 0 then
  rcall("ZADD", limiter_key, unpack(granted))
  rcall("PEXPIRE", limiter_key, window)
end
if drained == #KEYS - 2 then
  out[n + 1] = -1
  for i = 1, drained do
    local id = last_ids[i]
    if not id then
      local head = rcall("XREVRANGE", KEYS[i + 2], "+", "-", "COUNT", 1)
      id = head[1] and head[1][1] or "0-0"
    end
    out[n + 1 + i] = id
  end
end
return out
