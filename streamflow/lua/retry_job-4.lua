--[[
  retry_job: put one dead-lettered job back on its level stream with fresh attempts,
  optionally with new data. Without new data the dead letter is removed (as retry_dead does);
  with new data it is kept, so the original payload stays on record beside the audit entry.

  KEYS[1]  dead stream
  KEYS[2]  where hash (job id -> level index:entry id)
  KEYS[3]  events stream
  KEYS[4]  audit stream
  KEYS[5 ..]  one stream per priority level, highest first (declared tail)

  ARGV[1]  dead entry id
  ARGV[2]  1 to replace the data with ARGV[3], 0 to keep it
  ARGV[3]  new data (JSON), "" when kept
  ARGV[4]  now (ms)
  ARGV[5]  1 to emit events, 0 not
  ARGV[6]  events MAXLEN (approximate)
  ARGV[7]  actor ("" when unknown)
  ARGV[8]  audit MAXLEN (approximate)
  ARGV[9]  L, the number of levels; ARGV[10 .. 9+L] their names, in KEYS order

  Returns  {job id, "<level index>:<entry id>"}; "!missing" when the dead letter is gone,
           "!malformed" when it holds no job name (nothing can run it)
  Events   waiting, with i (job id), from (dead)
]]
local rcall = redis.call
local dead_key, where_key, events_key, audit_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead_id, edit, data = ARGV[1], ARGV[2] == "1", ARGV[3]
local levels = tonumber(ARGV[9])
local level_of = {}
for i = 1, levels do level_of[ARGV[9 + i]] = i end

local entry = rcall("XRANGE", dead_key, dead_id, dead_id)[1]
if not entry then return "!missing" end
local fields = entry[2]
local level = math.floor((levels + 1) / 2)
local keep = {}
local job_id, source, has_name, old_size = nil, nil, false, 0
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == "x:level" and level_of[value] then level = level_of[value] end
  if name == "x:src" then source = value end
  if string.sub(name, 1, 2) ~= "x:" and name ~= "a" then
    if name == "d" then
      old_size = #value
      if edit then value = data end
    end
    keep[#keep + 1] = name
    keep[#keep + 1] = value
    if name == "i" then job_id = value end
    if name == "n" then has_name = true end
  end
end
if not has_name then return "!malformed" end
if not job_id then
  job_id = ARGV[9 + level] .. ":" .. (source or entry[1])
  keep[#keep + 1] = "i"
  keep[#keep + 1] = job_id
end
local entry_id = rcall("XADD", KEYS[4 + level], "*", unpack(keep))
local location = (level - 1) .. ":" .. entry_id
rcall("HSET", where_key, job_id, location)
if not edit then rcall("XDEL", dead_key, dead_id) end
if ARGV[5] == "1" then
  rcall("XADD", events_key, "MAXLEN", "~", ARGV[6], "*", "e", "waiting", "i", job_id,
    "from", "dead")
end
if edit then
  rcall("XADD", audit_key, "MAXLEN", "~", ARGV[8], "*", "i", job_id, "act", "retry_edit",
    "from", "dead", "dead_id", dead_id, "old_bytes", old_size, "d", data, "by", ARGV[7],
    "at", ARGV[4])
else
  rcall("XADD", audit_key, "MAXLEN", "~", ARGV[8], "*", "i", job_id, "act", "retry",
    "from", "dead", "dead_id", dead_id, "by", ARGV[7], "at", ARGV[4])
end
return {job_id, location}
