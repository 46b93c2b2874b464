--[[
  complete_jobs: acknowledge finished jobs of one stream, with their events and results.

  KEYS[1]  level stream
  KEYS[2]  events stream
  KEYS[3]  done stream (the results of the last completed jobs)
  KEYS[4]  where hash (job id -> entry of a job with an id): the finished jobs leave it
  KEYS[5]  metrics hash of the current minute: field c counts completed jobs

  ARGV[1]  group
  ARGV[2]  1 to emit events, 0 not
  ARGV[3]  events MAXLEN (approximate)
  ARGV[4]  done: how many results to keep (0 keeps none)
  ARGV[5]  done: drop results older than this entry id (MINID; "0" for no age limit)
  ARGV[6]  metrics TTL (ms)
  ARGV[7]  E: how many entries are acknowledged
  ARGV[8]  W: how many of them hold a job with an id (a where record: an entry with an i field)
  ARGV[9]  K: how many results are kept
  ARGV[10 ..] the E entry ids; then the W job ids whose where records go; then, when events
           are emitted, 3 values per entry: job id, name, duration (ms); then 4 per kept
           result: job id, name, duration (ms), result (JSON)

  Returns  the number of entries acknowledged
  Events   completed, with i (job id), n (name), ms (duration); skipped, with the results and
           the per-minute count, when Redis is full (see includes/full_redis): the acks still
           go through

  Per job this costs one XACK argument and, with events, one XADD: everything else is one
  command per call (the where records of jobs without an id do not exist: nothing to delete;
  the events and done streams are trimmed once, after the batch, not by every XADD).
]]
local rcall = redis.call
--- @include "full_redis"
local stream_key, events_key, done_key = KEYS[1], KEYS[2], KEYS[3]
local where_key, metrics_key = KEYS[4], KEYS[5]
local group = ARGV[1]
local emit = ARGV[2] == "1"
local events_maxlen = ARGV[3]
local done_maxlen = ARGV[4]
local done_minid = ARGV[5]
local metrics_ttl = ARGV[6]
local entries, with_ids, results = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if entries == 0 then return 0 end
local first_id = 10
local first_where = first_id + entries
local first_event = first_where + with_ids
local first_result = first_event + (emit and 3 * entries or 0)
local last_result = first_result + 4 * results - 1

local function event(pos)
  return optional("XADD", events_key, "*", "e", "completed", "i", ARGV[pos], "n",
    ARGV[pos + 1], "ms", ARGV[pos + 2])
end
local function result(pos)
  return optional("XADD", done_key, "*", "i", ARGV[pos], "n", ARGV[pos + 1], "ms",
    ARGV[pos + 2], "r", ARGV[pos + 3])
end

-- the first event or result comes first: it tells whether Redis is full
local events = (emit and event(first_event)) and 1 or 0
local kept = (results > 0 and result(first_result)) and 1 or 0

local acked = 0
for pos = first_id, first_where - 1, 1000 do
  acked = acked + rcall("XACK", stream_key, group, unpack(ARGV, pos,
    math.min(pos + 999, first_where - 1)))
end
for pos = first_where, first_event - 1, 1000 do
  rcall("HDEL", where_key, unpack(ARGV, pos, math.min(pos + 999, first_event - 1)))
end
if acked > 0 and optional("HINCRBY", metrics_key, "c", acked) then
  rcall("PEXPIRE", metrics_key, metrics_ttl)
end
if not full then
  if emit then
    for pos = first_event + 3, first_result - 1, 3 do event(pos) end
    events = entries
  end
  for pos = first_result + 4, last_result, 4 do result(pos) end
  kept = results
end
if events > 0 then
  rcall("XTRIM", events_key, "MAXLEN", "~", events_maxlen)
end
if kept > 0 then
  rcall("XTRIM", done_key, "MAXLEN", done_maxlen)
  if done_minid ~= "0" then rcall("XTRIM", done_key, "MINID", done_minid) end
end
return acked
