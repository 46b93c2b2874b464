--[[
  trim_stream: drop the entries of a work stream that no consumer group still needs.
  Never MAXLEN: that would drop unprocessed jobs. The floor is, over all groups, the smallest
  pending id, or the last delivered id when nothing is pending (entries after it are unread).

  KEYS[1]  level stream

  ARGV[1]  "=" to trim exactly to the floor, or "~" to remove whole stream nodes only; either
           way with no cap on the work of one call (XTRIM's default cap with "~", 100 nodes,
           fell behind sustained load), so one call removes everything acknowledged. The cost
           is about one microsecond per 100-entry node.

  Returns  the number of entries removed (0 when the stream has no group)
  Events   none

  XTRIM, XINFO and XPENDING are allowed when Redis is out of memory (not denyoom): trimming
  is how a full Redis frees memory.
]]
local rcall = redis.call
local stream_key = KEYS[1]

if rcall("EXISTS", stream_key) == 0 then return 0 end

--- @include "stream_ids"

local groups = rcall("XINFO", "GROUPS", stream_key)
if #groups == 0 then return 0 end
local floor = nil
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local keep = info["last-delivered-id"]
  if tonumber(info["pending"]) > 0 then
    local summary = rcall("XPENDING", stream_key, info["name"])
    keep = summary[2]
  end
  if floor == nil or less(keep, floor) then floor = keep end
end
if floor == "0-0" then return 0 end
if ARGV[1] == "~" then
  return rcall("XTRIM", stream_key, "MINID", "~", floor, "LIMIT", 0)
end
return rcall("XTRIM", stream_key, "MINID", floor)  -- exact
