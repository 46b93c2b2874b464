--[[
  promote_due: move due members of the delayed set to their level streams.
  One script, so any number of promoters running at once never add a job twice.

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash
  KEYS[3]  events stream
  KEYS[4 ..]  one stream per priority level, highest first (declared tail)

  ARGV[1]  now (ms)
  ARGV[2]  most jobs to move in one call
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)

  Returns  {moved, next due (ms) or -1 when the set is empty}
  Events   waiting, with i (job id)
]]
local rcall = redis.call
local delayed_key, jobs_key, events_key = KEYS[1], KEYS[2], KEYS[3]
local emit = ARGV[3] == "1"

local due = rcall("ZRANGEBYSCORE", delayed_key, "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
local moved = 0
for _, job_id in ipairs(due) do
  local record = rcall("HGET", jobs_key, job_id)
  if record then
    local decoded = cjson.decode(record)
    local level = decoded[1]
    rcall("XADD", KEYS[4 + level], "*", unpack(decoded, 2))
    rcall("HDEL", jobs_key, job_id)
    moved = moved + 1
    if emit then
      rcall("XADD", events_key, "MAXLEN", "~", ARGV[4], "*", "e", "waiting", "i", job_id)
    end
  end
  rcall("ZREM", delayed_key, job_id)
end
local next_due = -1
local head = rcall("ZRANGE", delayed_key, 0, 0, "WITHSCORES")
if head[2] then next_due = tonumber(head[2]) end
return {moved, next_due}
