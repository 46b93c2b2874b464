--[[
  update_job: replace the data of a job that is waiting or delayed. A delayed job's envelope is
  rewritten in place. A stream entry cannot be changed, so a waiting job is re-added with the
  new data at the tail of its level, keeping its id, attempt and enqueue time; a worker
  fetching it at the same moment gets either the old entry (then the update is refused) or
  none of it.

  KEYS[1]  level stream the job was seen in
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash (envelopes of delayed jobs)
  KEYS[4]  where hash (job id -> level index:entry id)
  KEYS[5]  events stream
  KEYS[6]  audit stream

  ARGV[1]  job id
  ARGV[2]  stream entry id ("" when not seen in a stream)
  ARGV[3]  level index of KEYS[1]
  ARGV[4]  level name of KEYS[1] (a first attempt added without an id is "<level>:<entry id>")
  ARGV[5]  new data (JSON)
  ARGV[6]  now (ms)
  ARGV[7]  1 to emit events, 0 not
  ARGV[8]  events MAXLEN (approximate)
  ARGV[9]  actor ("" when unknown)
  ARGV[10] audit MAXLEN (approximate)

  Returns  the state updated in: waiting | delayed; a refusal as "!active", "!done" or
           "!missing" (not where it was seen: the caller looks again)
  Events   updated, with i (job id)
]]
local rcall = redis.call
local stream_key, delayed_key, jobs_key, where_key, events_key, audit_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_id, entry_id, data = ARGV[1], ARGV[2], ARGV[5]

--- @include "stream_ids"

local function finish(state, old_size)
  if ARGV[7] == "1" then
    rcall("XADD", events_key, "MAXLEN", "~", ARGV[8], "*", "e", "updated", "i", job_id)
  end
  rcall("XADD", audit_key, "MAXLEN", "~", ARGV[10], "*", "i", job_id, "act", "update_data",
    "from", state, "old_bytes", old_size, "d", data, "by", ARGV[9], "at", ARGV[6])
  return state
end

if rcall("ZSCORE", delayed_key, job_id) then
  local record = rcall("HGET", jobs_key, job_id)
  if not record then return "!missing" end
  local decoded = cjson.decode(record)
  local old_size = 0
  for i = 2, #decoded, 2 do
    if decoded[i] == "d" then
      old_size = #decoded[i + 1]
      decoded[i + 1] = data
    end
  end
  rcall("HSET", jobs_key, job_id, cjson.encode(decoded))
  return finish("delayed", old_size)
end
if entry_id == "" then return "!missing" end
local entry = rcall("XRANGE", stream_key, entry_id, entry_id)[1]
if not entry then return "!missing" end
for _, g in ipairs(rcall("XINFO", "GROUPS", stream_key)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if not less(info["last-delivered-id"], entry_id) then
    if #rcall("XPENDING", stream_key, info["name"], entry_id, entry_id, 1) > 0 then
      return "!active"
    end
    return "!done"
  end
end
local fields = entry[2]
local has_id, has_time, old_size = false, false, 0
for i = 1, #fields, 2 do
  if fields[i] == "d" then
    old_size = #fields[i + 1]
    fields[i + 1] = data
  elseif fields[i] == "i" then
    has_id = true
  elseif fields[i] == "t" then
    has_time = true
  end
end
if not has_id then
  fields[#fields + 1] = "i"
  fields[#fields + 1] = ARGV[4] .. ":" .. entry_id
end
if not has_time then
  fields[#fields + 1] = "t"
  fields[#fields + 1] = string.match(entry_id, "^(%d+)")
end
rcall("XDEL", stream_key, entry_id)
local new_id = rcall("XADD", stream_key, "*", unpack(fields))
rcall("HSET", where_key, job_id, ARGV[3] .. ":" .. new_id)
return finish("waiting", old_size)
