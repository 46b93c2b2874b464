--[[
  add_ordered: add jobs that carry a key to an ordered queue (partition): at most one job of a
  key is out in the queue (waiting, running, retrying or delayed); the later ones wait in the
  key's held list, in the order they were added, until `release_keys` lets the next one go.

  KEYS[1]  key locks hash: key -> job id of the one job of that key that is out
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash (envelopes of delayed and held jobs)
  KEYS[4]  events stream
  KEYS[5 .. 4+L]          one stream per priority level, highest first (declared tail)
  KEYS[5+L ..]            status records (also the dedup marks of caller-given ids: a job
                          with an id is tracked), held lists, referenced by index from the
                          job records

  ARGV[1]  now (ms)
  ARGV[2]  L, the number of levels
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5]  dedup TTL (ms)
  ARGV[6 ..] job records, each:
           level index (0-based), due (ms, 0 = now), 1 when the job id is the caller's
           (deduplicated on its status record) else 0, status key index (0 = untracked; else
           KEYS[4+L+index]), held list index (same numbering), job id (never empty), key, delayed record (the job as
           `promote_due` reads it), job name, field count F, then F stream fields

  Returns  one item per job: the job id, or 0 when its status record already existed (a
           duplicate: nothing was written)
  Events   added | delayed, with i (job id) and n (name); a held job's event is written when
           it is let go
]]
local rcall = redis.call
local locks_key, delayed_key, jobs_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = ARGV[1]
local levels = tonumber(ARGV[2])
local emit = ARGV[3] == "1"
local events_maxlen = ARGV[4]
local dedup_ttl = ARGV[5]
local extra = 4 + levels

local results = {}
local pos = 6
local n = #ARGV
while pos <= n do
  local level = tonumber(ARGV[pos])
  local due = tonumber(ARGV[pos + 1])
  local caller_id = ARGV[pos + 2] == "1"
  local status_index = tonumber(ARGV[pos + 3])
  local held_key = KEYS[extra + tonumber(ARGV[pos + 4])]
  local job_id = ARGV[pos + 5]
  local key = ARGV[pos + 6]
  local record = ARGV[pos + 7]
  local name = ARGV[pos + 8]
  local field_count = tonumber(ARGV[pos + 9])
  local first = pos + 10
  local last = first + field_count - 1
  pos = last + 1

  local fresh = true
  if caller_id then
    fresh = rcall("EXISTS", KEYS[extra + status_index]) == 0  -- the status record is the mark
  end
  local state = "waiting"
  if not fresh then
    results[#results + 1] = 0
  else
    results[#results + 1] = job_id
    if rcall("HSETNX", locks_key, key, job_id) == 0 then
      rcall("HSET", jobs_key, job_id, record)
      rcall("RPUSH", held_key, due .. "|" .. job_id)
    elseif due > 0 then
      state = "delayed"
      rcall("ZADD", delayed_key, due, job_id)
      rcall("HSET", jobs_key, job_id, record)
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
          "e", "delayed", "i", job_id, "n", name, "due", due)
      end
    else
      rcall("XADD", KEYS[5 + level], "*", unpack(ARGV, first, last))
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
          "e", "added", "i", job_id, "n", name)
      end
    end
  end
  if fresh and status_index > 0 then
    local status_key = KEYS[extra + status_index]
    rcall("HSET", status_key, "state", state, "name", name, "attempt", 1, "added_ms", now)
    rcall("PEXPIRE", status_key, dedup_ttl)
  end
end
return results
