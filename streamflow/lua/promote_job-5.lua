--[[
  promote_job: move one delayed job (or a retry waiting out its backoff) to its level stream
  now. Atomic against the promoter: whichever runs first moves the job, the other finds it
  gone.

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash (envelopes of delayed jobs)
  KEYS[3]  where hash (job id -> level index:entry id)
  KEYS[4]  events stream
  KEYS[5]  audit stream
  KEYS[6 ..]  one stream per priority level, highest first (declared tail)

  ARGV[1]  job id
  ARGV[2]  now (ms)
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5]  actor ("" when unknown)
  ARGV[6]  audit MAXLEN (approximate)

  Returns  the new entry id, as "<level index>:<entry id>"; "!missing" when the job is not
           delayed (any more)
  Events   waiting, with i (job id), from (delayed)
]]
local rcall = redis.call
local delayed_key, jobs_key, where_key, events_key, audit_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id = ARGV[1]

local record = rcall("HGET", jobs_key, job_id)
if not rcall("ZSCORE", delayed_key, job_id) or not record then return "!missing" end
local decoded = cjson.decode(record)
local level = decoded[1]
local entry_id = rcall("XADD", KEYS[6 + level], "*", unpack(decoded, 2))
rcall("HDEL", jobs_key, job_id)
rcall("ZREM", delayed_key, job_id)
local location = level .. ":" .. entry_id
rcall("HSET", where_key, job_id, location)
if ARGV[3] == "1" then
  rcall("XADD", events_key, "MAXLEN", "~", ARGV[4], "*", "e", "waiting", "i", job_id,
    "from", "delayed")
end
rcall("XADD", audit_key, "MAXLEN", "~", ARGV[6], "*", "i", job_id, "act", "promote",
  "from", "delayed", "by", ARGV[5], "at", ARGV[2])
return location
