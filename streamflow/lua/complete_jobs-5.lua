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
  ARGV[4]  done: how many results to keep (0 keeps none); exact once the batch is added (each
           XADD trims whole nodes only, one exact XTRIM ends the batch: 25 % cheaper)
  ARGV[5]  done: drop results older than this entry id (MINID; "0" for no age limit)
  ARGV[6]  metrics TTL (ms)
  ARGV[7 ..] per job, 6 values: entry id, job id, name, duration (ms), 1 to keep the result
           (0 not), result (JSON or "")

  Returns  the number of entries acknowledged
  Events   completed, with i (job id), n (name), ms (duration); skipped, with the results and
           the per-minute count, when Redis is full (see includes/full_redis): the acks still
           go through
]]
local rcall = redis.call
--- @include "full_redis"
local stream_key, events_key, done_key = KEYS[1], KEYS[2], KEYS[3]
local where_key, metrics_key = KEYS[4], KEYS[5]
local group = ARGV[1]
local emit = ARGV[2] == "1"
local events_maxlen = ARGV[3]
local done_maxlen = tonumber(ARGV[4])
local done_minid = ARGV[5]
local metrics_ttl = ARGV[6]

local kept = 0
local function record(pos)
  if emit then
    optional("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
      "e", "completed", "i", ARGV[pos + 1], "n", ARGV[pos + 2], "ms", ARGV[pos + 3])
  end
  if done_maxlen > 0 and ARGV[pos + 4] == "1" and optional("XADD", done_key, "MAXLEN", "~",
      done_maxlen, "*", "i", ARGV[pos + 1], "n", ARGV[pos + 2], "ms", ARGV[pos + 3],
      "r", ARGV[pos + 5]) then
    kept = kept + 1
  end
end

if #ARGV < 7 then return 0 end
-- the first job's event or result comes first: it tells whether Redis is full
record(7)
local acked = 0
local ids = {}
local job_ids = {}
for pos = 7, #ARGV, 6 do
  ids[#ids + 1] = ARGV[pos]
  job_ids[#job_ids + 1] = ARGV[pos + 1]
  if #ids == 1000 then
    acked = acked + rcall("XACK", stream_key, group, unpack(ids))
    rcall("HDEL", where_key, unpack(job_ids))
    ids = {}
    job_ids = {}
  end
end
if #ids > 0 then
  acked = acked + rcall("XACK", stream_key, group, unpack(ids))
  rcall("HDEL", where_key, unpack(job_ids))
end
if acked > 0 and optional("HINCRBY", metrics_key, "c", acked) then
  rcall("PEXPIRE", metrics_key, metrics_ttl)
end
if not full then
  for pos = 13, #ARGV, 6 do record(pos) end
end
if kept > 0 then
  rcall("XTRIM", done_key, "MAXLEN", done_maxlen)
end
if kept > 0 and done_minid ~= "0" then
  rcall("XTRIM", done_key, "MINID", done_minid)
end
return acked
