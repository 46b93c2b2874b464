--[[
  move_to_dead: acknowledge an entry and keep it in the dead-letter stream with the reason.

  KEYS[1]  level stream
  KEYS[2]  dead stream
  KEYS[3]  events stream
  KEYS[4]  where hash (job id -> entry of a job with an id): the job leaves it
  KEYS[5]  metrics hash of the current minute: field f counts dead-lettered jobs

  ARGV[1]  group
  ARGV[2]  entry id
  ARGV[3]  job id ("" when unknown: a malformed entry)
  ARGV[4]  reason (failed, discarded, stalled, malformed, no_handler, timeout)
  ARGV[5]  error text
  ARGV[6]  traceback excerpt
  ARGV[7]  now (ms)
  ARGV[8]  level name
  ARGV[9]  1 to emit events (failures are emitted unless events are off), 0 not
  ARGV[10] events MAXLEN (approximate)
  ARGV[11] dead letters to keep (exact MAXLEN; 0 keeps all)
  ARGV[12] drop dead letters older than this entry id (MINID; "0" for no age limit)
  ARGV[13] metrics TTL (ms)
  ARGV[14 ..] the entry's original fields, flat

  Returns  the dead-letter entry id; -2 (NOT_PENDING) when the entry was no longer pending
  Events   dead, with i, reason, err; skipped when Redis is full
]]
local rcall = redis.call
--- @include "dead_letters"
--- @include "full_redis"
local stream_key, dead_key, events_key = KEYS[1], KEYS[2], KEYS[3]

-- the ack comes last: a write refused on the way (wrong type) raises before it, and the entry
-- stays pending instead of being acknowledged without its dead letter. A full Redis refuses
-- none of them (includes/full_redis): an entry left pending would keep the stream from being
-- trimmed
if #rcall("XPENDING", stream_key, ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return -2
end
if ARGV[9] == "1" then
  optional("XADD", events_key, "MAXLEN", "~", ARGV[10], "*",
    "e", "dead", "i", ARGV[3], "reason", ARGV[4], "err", ARGV[5])
end
allow_writes(stream_key, ARGV[1])
local dead_id = rcall("XADD", dead_key, "*",
  "x:reason", ARGV[4], "x:error", ARGV[5], "x:tb", ARGV[6], "x:at", ARGV[7],
  "x:level", ARGV[8], "x:src", ARGV[2], unpack(ARGV, 14))
trim_dead(dead_key, ARGV[11], ARGV[12])
if ARGV[3] ~= "" then rcall("HDEL", KEYS[4], ARGV[3]) end
if not full then
  rcall("HINCRBY", KEYS[5], "f", 1)
  rcall("PEXPIRE", KEYS[5], ARGV[13])
end
rcall("XACK", stream_key, ARGV[1], ARGV[2])
return dead_id
