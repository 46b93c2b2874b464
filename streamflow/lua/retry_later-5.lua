--[[
  retry_later: a failed job with attempts left: acknowledge it and schedule the next attempt.

  KEYS[1]  level stream
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash
  KEYS[4]  events stream
  KEYS[5]  where hash (job id -> entry of a job with an id): the job leaves its stream

  ARGV[1]  group
  ARGV[2]  entry id
  ARGV[3]  job id
  ARGV[4]  due (ms)
  ARGV[5]  delayed record of the next attempt (see add_jobs)
  ARGV[6]  1 to emit events, 0 not
  ARGV[7]  events MAXLEN (approximate)
  ARGV[8]  name
  ARGV[9]  attempt that failed
  ARGV[10] error text
  ARGV[11] event name (retrying, or rate_limited)

  Returns  1 when scheduled; -2 (NOT_PENDING) when the entry was no longer pending
           (another worker finished it): nothing is scheduled
  Events   retrying | rate_limited, with i, n, a (attempt), err, due; skipped when Redis is
           full
]]
local rcall = redis.call
--- @include "full_redis"
local stream_key, delayed_key, jobs_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id = ARGV[3]

-- the ack comes last: a write refused on the way (wrong type) raises before it, and the entry
-- stays pending instead of being acknowledged with no next attempt. A full Redis refuses none
-- of them (includes/full_redis): an entry left pending would keep the stream from being trimmed
if #rcall("XPENDING", stream_key, ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return -2
end
if ARGV[6] == "1" then
  optional("XADD", events_key, "MAXLEN", "~", ARGV[7], "*",
    "e", ARGV[11], "i", job_id, "n", ARGV[8], "a", ARGV[9], "err", ARGV[10], "due", ARGV[4])
end
allow_writes(stream_key, ARGV[1])
rcall("HDEL", KEYS[5], job_id)
rcall("ZADD", delayed_key, ARGV[4], job_id)
rcall("HSET", jobs_key, job_id, ARGV[5])
rcall("XACK", stream_key, ARGV[1], ARGV[2])
return 1
