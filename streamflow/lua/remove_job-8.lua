--[[
  remove_job: remove one job that is waiting, delayed or dead; or, to cancel it, ask the worker
  running it to stop. The caller says where it last saw the job; the script checks it there
  again, so a worker fetching the entry or the promoter moving it at the same moment either
  wins whole or loses whole.

  A waiting or delayed job of an ordered queue that holds its key releases it in the same move
  (the next held job of the key goes, see includes/release_key.lua): a caller lost between the
  removal and a separate release would leave the key locked by a job that no longer exists.
  A job without a key passes the 8 keys only and pays nothing for it.

  KEYS[1]  level stream the job was seen in ("" position still needs a key: pass any level)
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash (envelopes of delayed jobs)
  KEYS[4]  dead stream
  KEYS[5]  where hash (job id -> level index:entry id)
  KEYS[6]  events stream
  KEYS[7]  control stream (cancel requests the workers read)
  KEYS[8]  audit stream
  KEYS[9]  key locks hash (ordered queues; only with ARGV[11])
  KEYS[10] held list of the job's key (only with ARGV[11])
  KEYS[11 .. 10+L] one stream per priority level, highest first, only with ARGV[11]
           (declared tail)

  ARGV[1]  job id
  ARGV[2]  stream entry id ("" when not seen in a stream)
  ARGV[3]  dead entry id ("" when not seen dead)
  ARGV[4]  mode: remove | cancel (cancel: an active job gets a cancel request; dead refused)
  ARGV[5]  now (ms)
  ARGV[6]  1 to emit events, 0 not
  ARGV[7]  events MAXLEN (approximate)
  ARGV[8]  actor ("" when unknown)
  ARGV[9]  level index of KEYS[1] (for the cancel request)
  ARGV[10] audit MAXLEN (approximate)
  ARGV[11] the job's key (absent or "": no key to release)
  ARGV[12] 1 to emit the waiting | delayed event of a held job let go, 0 not

  Returns  the state the job was taken from: waiting | delayed | dead, or "cancelling" when a
           cancel request went to the workers; a refusal as "!<state>": !active (remove of a
           running job), !done (delivered and acknowledged), !dead (cancel of a dead letter),
           !missing (not where it was seen: the caller looks again)
  Events   removed, with i (job id), from (state); cancelling, with i; waiting | delayed,
           with i, for a held job let go
]]
local rcall = redis.call
local stream_key, delayed_key, jobs_key, dead_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local where_key, events_key, control_key, audit_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local job_id, entry_id, dead_id, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

--- @include "stream_ids"

--- @include "release_key"

-- waiting | active | done | missing: where a stream entry stands for every group
local function entry_state(key, id)
  if not rcall("XRANGE", key, id, id)[1] then return "missing" end
  local state = "waiting"
  for _, g in ipairs(rcall("XINFO", "GROUPS", key)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if not less(info["last-delivered-id"], id) then
      if #rcall("XPENDING", key, info["name"], id, id, 1) > 0 then return "active" end
      state = "done"
    end
  end
  return state
end

local function done(from, event)
  rcall("HDEL", where_key, job_id)
  if ARGV[6] == "1" then
    rcall("XADD", events_key, "MAXLEN", "~", ARGV[7], "*", "e", event, "i", job_id,
      "from", from)
  end
  rcall("XADD", audit_key, "MAXLEN", "~", ARGV[10], "*", "i", job_id, "act", mode,
    "from", from, "by", ARGV[8], "at", ARGV[5])
  local key = ARGV[11]
  if key and key ~= "" and (from == "waiting" or from == "delayed") then
    release_key({locks = KEYS[9], delayed = delayed_key, jobs = jobs_key, events = events_key,
      stream_base = 11, now = tonumber(ARGV[5]), emit = ARGV[12] == "1", maxlen = ARGV[7]},
      key, job_id, KEYS[10])
  end
  return from
end

if rcall("ZSCORE", delayed_key, job_id) then
  rcall("ZREM", delayed_key, job_id)
  rcall("HDEL", jobs_key, job_id)
  return done("delayed", "removed")
end
if entry_id ~= "" then
  local state = entry_state(stream_key, entry_id)
  if state == "waiting" then
    rcall("XDEL", stream_key, entry_id)
    return done("waiting", "removed")
  end
  if state == "active" then
    if mode ~= "cancel" then return "!active" end
    rcall("XADD", control_key, "MAXLEN", "~", 1000, "*", "c", "cancel", "i", job_id,
      "l", ARGV[9], "e", entry_id, "at", ARGV[5])
    done("active", "cancelling")
    return "cancelling"
  end
  if state == "done" and dead_id == "" then return "!done" end
end
if dead_id ~= "" then
  if not rcall("XRANGE", dead_key, dead_id, dead_id)[1] then return "!missing" end
  if mode == "cancel" then return "!dead" end
  rcall("XDEL", dead_key, dead_id)
  return done("dead", "removed")
end
return "!missing"
