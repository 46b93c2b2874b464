--[[
  reschedule_job: give a delayed job a new due time.

  KEYS[1]  delayed zset
  KEYS[2]  events stream
  KEYS[3]  audit stream

  ARGV[1]  job id
  ARGV[2]  new due (ms)
  ARGV[3]  now (ms)
  ARGV[4]  1 to emit events, 0 not
  ARGV[5]  events MAXLEN (approximate)
  ARGV[6]  actor ("" when unknown)
  ARGV[7]  audit MAXLEN (approximate)

  Returns  the previous due time (ms) as a string; "!missing" when the job is not delayed
  Events   delayed, with i (job id), due
]]
local rcall = redis.call
local delayed_key, events_key, audit_key = KEYS[1], KEYS[2], KEYS[3]
local job_id = ARGV[1]

local previous = rcall("ZSCORE", delayed_key, job_id)
if not previous then return "!missing" end
rcall("ZADD", delayed_key, "XX", ARGV[2], job_id)
if ARGV[4] == "1" then
  rcall("XADD", events_key, "MAXLEN", "~", ARGV[5], "*", "e", "delayed", "i", job_id,
    "due", ARGV[2])
end
rcall("XADD", audit_key, "MAXLEN", "~", ARGV[7], "*", "i", job_id, "act", "reschedule",
  "from", previous, "to", ARGV[2], "by", ARGV[6], "at", ARGV[3])
return previous
