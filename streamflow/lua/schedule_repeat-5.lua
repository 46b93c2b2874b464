--[[
  schedule_repeat: put the next tick of a repeatable job in the delayed set, once.
  The repeat's state (last scheduled fire time and count) is compared and set in the same
  script, and the tick id "repeat:<key>:<fire ms>" carries a dedup mark: however many
  schedulers run, each tick becomes one job.

  KEYS[1]  repeat state hash (repeat key -> "<last fire ms>:<count>")
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash
  KEYS[4]  events stream
  KEYS[5]  dedup mark of the tick id

  ARGV[1]  repeat key
  ARGV[2]  expected state ("" when none was scheduled yet)
  ARGV[3]  new state
  ARGV[4]  due (ms)
  ARGV[5]  tick job id
  ARGV[6]  delayed record of the tick (see add_jobs)
  ARGV[7]  job name
  ARGV[8]  dedup TTL (ms)
  ARGV[9]  1 to emit events, 0 not
  ARGV[10] events MAXLEN (approximate)

  Returns  1 when scheduled; 0 when another scheduler got there first (state changed) or the
           tick existed already
  Events   delayed, with i (tick id), n (name), due
]]
local rcall = redis.call
local state_key, delayed_key, jobs_key, events_key, dedup_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local repeat_key, job_id = ARGV[1], ARGV[5]

local current = rcall("HGET", state_key, repeat_key) or ""
if current ~= ARGV[2] then return 0 end
rcall("HSET", state_key, repeat_key, ARGV[3])
if not rcall("SET", dedup_key, job_id, "NX", "PX", ARGV[8]) then return 0 end
rcall("ZADD", delayed_key, ARGV[4], job_id)
rcall("HSET", jobs_key, job_id, ARGV[6])
if ARGV[9] == "1" then
  rcall("XADD", events_key, "MAXLEN", "~", ARGV[10], "*",
    "e", "delayed", "i", job_id, "n", ARGV[7], "due", ARGV[4])
end
return 1
