--[[
  reclaim_stalled: take over entries idle longer than min-idle from consumers that stopped,
  or dead-letter those already delivered more than max-stalled + 1 times.
  The min-idle guard of XCLAIM makes two reclaimers racing safe: only one gets each entry.

  KEYS[1]  level stream
  KEYS[2]  dead stream
  KEYS[3]  events stream
  KEYS[4]  where hash (job id -> entry of a job with an id): dead-lettered jobs leave it
  KEYS[5]  metrics hash of the current minute: field f counts dead-lettered jobs

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

  Returns  {claimed entries (XCLAIM reply: {{id, {f1, v1, ...}}, ...}), dead-lettered count}
  Events   stalled (per dead-lettered entry), reclaimed (per claimed entry), with i (job id);
           written when Redis is full too
]]
local rcall = redis.call
--- @include "dead_letters"
--- @include "job_id"
--- @include "full_redis"
local stream_key, dead_key, events_key = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, min_idle = ARGV[1], ARGV[2], ARGV[3]
local max_stalled = tonumber(ARGV[5])
local emit = ARGV[8] == "1"

local pending = rcall("XPENDING", stream_key, group, "IDLE", min_idle, "-", "+", ARGV[4])
if #pending == 0 then return {{}, 0} end
-- a full Redis must not refuse the dead letters: an entry left pending would keep the stream
-- from being trimmed (includes/full_redis). The events are capped: at their cap they add nothing
allow_writes(stream_key, group)
local to_claim = {}
local dead = 0
for _, item in ipairs(pending) do
  local entry_id, deliveries = item[1], tonumber(item[4])
  if deliveries > max_stalled then
    local entry = rcall("XRANGE", stream_key, entry_id, entry_id)
    if entry[1] then
      rcall("XADD", dead_key, "*", "x:reason", "stalled",
        "x:error", "delivered " .. deliveries .. " times without finishing",
        "x:tb", "", "x:at", ARGV[6], "x:level", ARGV[7], "x:src", entry_id,
        unpack(entry[1][2]))
      dead = dead + 1
      rcall("HDEL", KEYS[4], job_id_of(entry[1][2], ARGV[7], entry_id))
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", ARGV[9], "*",
          "e", "stalled", "i", job_id_of(entry[1][2], ARGV[7], entry_id),
          "deliveries", deliveries)
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
