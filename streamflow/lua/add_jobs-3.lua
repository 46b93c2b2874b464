--[[
  add_jobs: add one or many jobs atomically per job: dedup mark, then stream or delayed set.

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash (envelopes of delayed jobs)
  KEYS[3]  events stream
  KEYS[4 .. 3+L]          one stream per priority level, highest first (declared tail)
  KEYS[4+L ..]            dedup marks and status records, referenced by index from the job
                          records

  ARGV[1]  now (ms)
  ARGV[2]  L, the number of levels
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5]  dedup TTL (ms)
  ARGV[6 .. 5+L]  the level names, in KEYS order
  ARGV[6+L ..] job records, each:
           level index (0-based), due (ms, 0 = now), dedup key index (0 = none; else
           KEYS[3+L+index]), status key index (0 = untracked; same numbering), job id ("" =
           none: named after the entry), delayed record ("" when due is 0), job name, field
           count F, then F stream fields

  Returns  one item per job: the job id, or 0 when its dedup mark already existed (a
           duplicate: nothing was written). A job added with no id is named "<level>:<entry id>":
           entry ids are unique within one stream only.
  Events   added | delayed, with i (job id) and n (name)
]]
local rcall = redis.call
local delayed_key, jobs_key, events_key = KEYS[1], KEYS[2], KEYS[3]
local now = ARGV[1]
local levels = tonumber(ARGV[2])
local emit = ARGV[3] == "1"
local events_maxlen = ARGV[4]
local dedup_ttl = ARGV[5]

local results = {}
local pos = 6 + levels
local n = #ARGV
while pos <= n do
  local level = tonumber(ARGV[pos])
  local due = tonumber(ARGV[pos + 1])
  local dedup_index = tonumber(ARGV[pos + 2])
  local status_index = tonumber(ARGV[pos + 3])
  local job_id = ARGV[pos + 4]
  local record = ARGV[pos + 5]
  local name = ARGV[pos + 6]
  local field_count = tonumber(ARGV[pos + 7])
  local first = pos + 8
  local last = first + field_count - 1
  pos = last + 1

  local fresh = true
  if dedup_index > 0 then
    fresh = rcall("SET", KEYS[3 + levels + dedup_index], job_id, "NX", "PX", dedup_ttl)
  end
  if not fresh then
    results[#results + 1] = 0
  elseif due > 0 then
    rcall("ZADD", delayed_key, due, job_id)
    rcall("HSET", jobs_key, job_id, record)
    results[#results + 1] = job_id
    if emit then
      rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
        "e", "delayed", "i", job_id, "n", name, "due", due)
    end
  else
    local entry_id = rcall("XADD", KEYS[4 + level], "*", unpack(ARGV, first, last))
    if job_id == "" then job_id = ARGV[6 + level] .. ":" .. entry_id end
    results[#results + 1] = job_id
    if emit then
      rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
        "e", "added", "i", job_id, "n", name)
    end
  end
  if fresh and status_index > 0 then
    local status_key = KEYS[3 + levels + status_index]
    rcall("HSET", status_key, "state", due > 0 and "delayed" or "waiting", "name", name,
      "attempt", 1, "added_ms", now)
    rcall("PEXPIRE", status_key, dedup_ttl)
  end
end
return results
