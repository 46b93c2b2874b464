--[[
  drain_queue: drop every waiting and delayed job; jobs already delivered (pending) finish.
  Unread entries are skipped by moving the group's last-delivered id to the end of each stream
  (the janitor's MINID trim then removes them); delayed jobs and their envelopes are deleted.

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash
  KEYS[3 ..]  one stream per priority level (declared tail)

  ARGV[1]  group

  Returns  the number of jobs removed
  Events   none
]]
local rcall = redis.call
local delayed_key, jobs_key = KEYS[1], KEYS[2]
local group = ARGV[1]

local removed = rcall("ZCARD", delayed_key)
rcall("DEL", delayed_key, jobs_key)
for i = 3, #KEYS do
  local stream_key = KEYS[i]
  if rcall("EXISTS", stream_key) == 1 then
    local info = rcall("XINFO", "STREAM", stream_key)
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    for _, g in ipairs(rcall("XINFO", "GROUPS", stream_key)) do
      local ginfo = {}
      for j = 1, #g, 2 do ginfo[g[j]] = g[j + 1] end
      if ginfo["name"] == group then
        removed = removed + (tonumber(ginfo["lag"]) or 0)
      end
    end
    rcall("XGROUP", "SETID", stream_key, group, fields["last-generated-id"],
      "ENTRIESREAD", fields["entries-added"])
  end
end
return removed
