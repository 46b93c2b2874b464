--[[
  reclaim_stalled: take over entries idle longer than min-idle from consumers that stopped,
  or dead-letter those already delivered more than max-stalled + 1 times: as killed_worker when
  the consumer that held it last died mid-job (its heartbeat is still registered and stopped:
  the job kills or freezes its workers), else as stalled.
  The min-idle guard of XCLAIM makes two reclaimers racing safe: only one gets each entry.

  KEYS[1]  level stream
  KEYS[2]  dead stream
  KEYS[3]  events stream
  KEYS[4]  where hash (job id -> entry of a job with an id): dead-lettered jobs leave it
  KEYS[5]  metrics hash of the current minute: field f counts dead-lettered jobs
  KEYS[6]  workers hash (consumer -> heartbeat JSON with last_seen_ms)

  ARGV[1]  group
  ARGV[2]  consumer (the reclaiming worker)
  ARGV[3]  min idle (ms)
  ARGV[4]  most entries to look at
  ARGV[5]  max stalled count
  ARGV[6]  now (ms)
  ARGV[7]  level name
  ARGV[8]  1 to emit events, 0 not
  ARGV[9]  events MAXLEN (approximate)
  ARGV[10] dead letters to keep (exact MAXLEN; 0 keeps all)
  ARGV[11] drop dead letters older than this entry id (MINID; "0" for no age limit)
  ARGV[12] metrics TTL (ms)
  ARGV[13] heartbeat age (ms) past which a registered consumer is taken as dead

  Returns  {claimed entries (XCLAIM reply: {{id, {f1, v1, ...}}, ...}), dead-lettered count}
  Events   stalled (per dead-lettered entry, with deliveries and reason), reclaimed (per
           claimed entry), with i (job id); written when Redis is full too
]]
local rcall = redis.call
--- @include "dead_letters"
--- @include "job_id"
--- @include "full_redis"
local stream_key, dead_key, events_key, workers_key = KEYS[1], KEYS[2], KEYS[3], KEYS[6]
local group, consumer, min_idle = ARGV[1], ARGV[2], ARGV[3]
local max_stalled = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local emit = ARGV[8] == "1"
local dead_after = tonumber(ARGV[13])

-- a worker that stops cleanly removes its heartbeat; one that died (kill -9, os._exit, a
-- segfault, the OOM killer) or froze leaves it behind, growing old
local function silent_for(holder)
  local beat = rcall("HGET", workers_key, holder)
  if not beat then return nil end
  local ok, record = pcall(cjson.decode, beat)
  if not ok or type(record) ~= "table" or tonumber(record["last_seen_ms"]) == nil then
    return nil
  end
  local silent = now - tonumber(record["last_seen_ms"])
  if silent > dead_after then return silent end
  return nil
end

local pending = rcall("XPENDING", stream_key, group, "IDLE", min_idle, "-", "+", ARGV[4])
if #pending == 0 then return {{}, 0} end
-- a full Redis must not refuse the dead letters: an entry left pending would keep the stream
-- from being trimmed (includes/full_redis). The events are capped: at their cap they add nothing
allow_writes(stream_key, group)
local to_claim = {}
local dead = 0
for _, item in ipairs(pending) do
  local entry_id, holder, deliveries = item[1], item[2], tonumber(item[4])
  if deliveries > max_stalled then
    local entry = rcall("XRANGE", stream_key, entry_id, entry_id)
    if entry[1] then
      local reason = "stalled"
      local text = "delivered " .. deliveries .. " times without finishing"
      local silent = silent_for(holder)
      if silent then
        reason = "killed_worker"
        text = text .. "; its worker " .. holder .. " died mid-job (no heartbeat for " ..
          math.floor(silent / 1000) .. "s): the job kills or freezes the workers that run it"
      end
      rcall("XADD", dead_key, "*", "x:reason", reason, "x:error", text,
        "x:tb", "", "x:at", ARGV[6], "x:level", ARGV[7], "x:src", entry_id,
        unpack(entry[1][2]))
      dead = dead + 1
      rcall("HDEL", KEYS[4], job_id_of(entry[1][2], ARGV[7], entry_id))
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", ARGV[9], "*",
          "e", "stalled", "i", job_id_of(entry[1][2], ARGV[7], entry_id),
          "deliveries", deliveries, "reason", reason)
      end
    end
    rcall("XACK", stream_key, group, entry_id)
  else
    to_claim[#to_claim + 1] = entry_id
  end
end
if dead > 0 then
  trim_dead(dead_key, ARGV[10], ARGV[11])
  rcall("HINCRBY", KEYS[5], "f", dead)
  rcall("PEXPIRE", KEYS[5], ARGV[12])
end
local claimed = {}
if #to_claim > 0 then
  claimed = rcall("XCLAIM", stream_key, group, consumer, min_idle, unpack(to_claim))
  if emit then
    for _, entry in ipairs(claimed) do
      rcall("XADD", events_key, "MAXLEN", "~", ARGV[9], "*",
        "e", "reclaimed", "i", job_id_of(entry[2], ARGV[7], entry[1]))
    end
  end
end
return {claimed, dead}
