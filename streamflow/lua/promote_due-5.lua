--[[
  promote_due: move due members of the delayed set to their level streams.
  One script, so any number of promoters running at once never add a job twice. A record that
  does not decode, or names a level that does not exist, is moved to the dead letters (reason
  `malformed`) and the others go on: one bad record never stops the queue's delayed jobs.

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash
  KEYS[3]  events stream
  KEYS[4]  dead stream
  KEYS[5]  where hash (job id -> "<level index>:<entry id>" of a job with an id in a stream)
  KEYS[6 ..]  one stream per priority level, highest first (declared tail)

  ARGV[1]  now (ms)
  ARGV[2]  most jobs to move in one call
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5]  dead letters to keep (exact MAXLEN; 0 keeps all)
  ARGV[6]  drop dead letters older than this entry id (MINID; "0" for no age limit)

  Returns  {moved, next due (ms) or -1 when the set is empty, dead-lettered}
  Events   waiting, with i (job id); dead, with i, reason, err (bad records)
]]
local rcall = redis.call
--- @include "dead_letters"
local delayed_key, jobs_key, events_key, dead_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local levels = #KEYS - 5
local emit = ARGV[3] == "1"

local function bad_record(job_id, record, err)
  rcall("XADD", dead_key, "*", "x:reason", "malformed", "x:error", err, "x:tb", "",
    "x:at", ARGV[1], "x:level", "", "x:src", "", "i", job_id, "x:record", record)
  trim_dead(dead_key, ARGV[5], ARGV[6])
  if emit then
    rcall("XADD", events_key, "MAXLEN", "~", ARGV[4], "*",
      "e", "dead", "i", job_id, "reason", "malformed", "err", err)
  end
end

local function fields_of(record)
  local ok, decoded = pcall(cjson.decode, record)
  if not ok or type(decoded) ~= "table" then return nil, "delayed record is not JSON" end
  local level = decoded[1]
  if type(level) ~= "number" or level ~= math.floor(level) or level < 0 or level >= levels then
    return nil, "delayed record names no level of this queue"
  end
  local n = #decoded
  if n < 3 or n % 2 ~= 1 then return nil, "delayed record has no field list" end
  for i = 2, n do
    if type(decoded[i]) ~= "string" then return nil, "delayed record field is not a string" end
  end
  return decoded, nil
end

local due = rcall("ZRANGEBYSCORE", delayed_key, "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
local moved = 0
local dead = 0
for _, job_id in ipairs(due) do
  local record = rcall("HGET", jobs_key, job_id)
  if record then
    local decoded, err = fields_of(record)
    if decoded then
      local entry_id = rcall("XADD", KEYS[6 + decoded[1]], "*", unpack(decoded, 2))
      rcall("HSET", KEYS[5], job_id, decoded[1] .. ":" .. entry_id)
      moved = moved + 1
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", ARGV[4], "*", "e", "waiting", "i", job_id)
      end
    else
      bad_record(job_id, record, err)
      dead = dead + 1
    end
    rcall("HDEL", jobs_key, job_id)
  end
  rcall("ZREM", delayed_key, job_id)
end
local next_due = -1
local head = rcall("ZRANGE", delayed_key, 0, 0, "WITHSCORES")
if head[2] then next_due = tonumber(head[2]) end
return {moved, next_due, dead}
