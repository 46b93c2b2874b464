--[[
  find_entry: look for a job in a finished-jobs stream (dead letters or completed results),
  newest first, a bounded number of entries per call (the caller goes on from the cursor).

  KEYS[1]  dead stream or done stream

  ARGV[1]  job id
  ARGV[2]  start at this entry id and go back ("+" for the newest)
  ARGV[3]  most entries to look at

  Returns  {entry id or "", cursor ("" at the oldest entry)}. A job matches by its "i" field,
           or, for a first attempt added without an id, by "<x:level>:<x:src>"
  Events   none
]]
local rcall = redis.call
local job_id = ARGV[1]
local count = tonumber(ARGV[3])

local entries = rcall("XREVRANGE", KEYS[1], ARGV[2], "-", "COUNT", count)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local id, level, source = nil, nil, nil
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == "i" then id = fields[i + 1]
    elseif name == "x:level" then level = fields[i + 1]
    elseif name == "x:src" then source = fields[i + 1] end
  end
  if id == job_id or (id == nil and level and source and level .. ":" .. source == job_id) then
    return {entry[1], ""}
  end
end
if #entries < count then return {"", ""} end
return {"", "(" .. entries[#entries][1]}
