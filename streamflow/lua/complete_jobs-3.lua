--[[
  complete_jobs: acknowledge finished jobs of one stream, with their events and results.

  KEYS[1]  level stream
  KEYS[2]  events stream
  KEYS[3]  done stream (last N completed jobs with results)

  ARGV[1]  group
  ARGV[2]  1 to emit events, 0 not
  ARGV[3]  events MAXLEN (approximate)
  ARGV[4]  done MAXLEN (approximate; 0 keeps nothing)
  ARGV[5 ..] per job, 5 values: entry id, job id, name, duration (ms), result (JSON or "")

  Returns  the number of entries acknowledged
  Events   completed, with i (job id), n (name), ms (duration)
]]
local rcall = redis.call
local stream_key, events_key, done_key = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]
local emit = ARGV[2] == "1"
local events_maxlen = ARGV[3]
local done_maxlen = tonumber(ARGV[4])

local acked = 0
local ids = {}
for pos = 5, #ARGV, 5 do
  ids[#ids + 1] = ARGV[pos]
  if #ids == 1000 then
    acked = acked + rcall("XACK", stream_key, group, unpack(ids))
    ids = {}
  end
  if emit then
    rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
      "e", "completed", "i", ARGV[pos + 1], "n", ARGV[pos + 2], "ms", ARGV[pos + 3])
  end
  if done_maxlen > 0 then
    rcall("XADD", done_key, "MAXLEN", "~", done_maxlen, "*",
      "i", ARGV[pos + 1], "n", ARGV[pos + 2], "ms", ARGV[pos + 3], "r", ARGV[pos + 4])
  end
end
if #ids > 0 then
  acked = acked + rcall("XACK", stream_key, group, unpack(ids))
end
return acked
