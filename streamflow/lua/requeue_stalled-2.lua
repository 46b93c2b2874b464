--[[
  requeue_stalled: put entries idle longer than min-idle back at the tail of their stream, as
  new entries any worker may fetch (the operator's `streamflow claim`). Each entry is claimed
  first, so a worker reclaiming at the same moment cannot also get it.

  KEYS[1]  level stream
  KEYS[2]  where hash (job id -> "<level index>:<entry id>" of a job with an id in a stream)

  ARGV[1]  group
  ARGV[2]  consumer name the entries are claimed to before they are acknowledged
  ARGV[3]  min idle (ms)
  ARGV[4]  most entries to move
  ARGV[5]  level name (a first attempt added without an id keeps "<level>:<old entry id>" as its
           id, and its enqueue time)
  ARGV[6]  level index

  Returns  the number of entries put back
  Events   none
]]
local rcall = redis.call
local stream_key = KEYS[1]
local group, consumer, min_idle = ARGV[1], ARGV[2], ARGV[3]

local pending = rcall("XPENDING", stream_key, group, "IDLE", min_idle, "-", "+", ARGV[4])
local moved = 0
for _, item in ipairs(pending) do
  local claimed = rcall("XCLAIM", stream_key, group, consumer, min_idle, item[1])
  local entry = claimed[1]
  if entry and entry[2] then
    local fields = entry[2]
    local job_id = nil
    for i = 1, #fields, 2 do
      if fields[i] == "i" then job_id = fields[i + 1] end
    end
    if not job_id then
      job_id = ARGV[5] .. ":" .. item[1]
      fields[#fields + 1] = "i"
      fields[#fields + 1] = job_id
      fields[#fields + 1] = "t"
      fields[#fields + 1] = string.match(item[1], "^(%d+)")
    end
    local entry_id = rcall("XADD", stream_key, "*", unpack(fields))
    rcall("HSET", KEYS[2], job_id, ARGV[6] .. ":" .. entry_id)
    moved = moved + 1
  end
  rcall("XACK", stream_key, group, item[1])
end
if moved > 0 or #pending > 0 then
  pcall(rcall, "XGROUP", "DELCONSUMER", stream_key, group, consumer)
end
return moved
