--[[
  retry_dead: put dead-lettered jobs back on their level stream with fresh attempts.

  KEYS[1]  dead stream
  KEYS[2]  events stream
  KEYS[3]  where hash (job id -> "<level index>:<entry id>" of a job with an id in a stream)
  KEYS[4 ..]  one stream per priority level, highest first (declared tail)

  ARGV[1]  1 to emit events, 0 not
  ARGV[2]  events MAXLEN (approximate)
  ARGV[3]  L, the number of levels; ARGV[4 .. 3+L] their names, in KEYS order
  ARGV[4+L ..] dead entry ids

  Returns  the number of jobs put back (missing entries, and malformed ones with no job name,
           stay where they are)
  Events   waiting, with i (job id), from (dead)
]]
local rcall = redis.call
local dead_key, events_key = KEYS[1], KEYS[2]
local levels = tonumber(ARGV[3])
local level_of = {}
for i = 1, levels do level_of[ARGV[3 + i]] = i end
local default_level = math.floor((levels + 1) / 2)

local moved = 0
for pos = 4 + levels, #ARGV do
  local entry = rcall("XRANGE", dead_key, ARGV[pos], ARGV[pos])[1]
  if entry then
    local fields = entry[2]
    local level = default_level
    local job_id = entry[1]
    local keep = {}
    local has_name, has_id = false, false
    local source = nil
    for i = 1, #fields, 2 do
      local name, value = fields[i], fields[i + 1]
      if name == "x:level" and level_of[value] then level = level_of[value] end
      if name == "x:src" then source = value end
      if string.sub(name, 1, 2) ~= "x:" and name ~= "a" then
        keep[#keep + 1] = name
        keep[#keep + 1] = value
        if name == "i" then job_id, has_id = value, true end
        if name == "n" then has_name = true end
      end
    end
    if has_name then
      -- a first attempt has no "i": its id was its entry id, which must outlive the move
      if not has_id and source then
        job_id = ARGV[3 + level] .. ":" .. source
        keep[#keep + 1] = "i"
        keep[#keep + 1] = job_id
      end
      local entry_id = rcall("XADD", KEYS[3 + level], "*", unpack(keep))
      rcall("HSET", KEYS[3], job_id, (level - 1) .. ":" .. entry_id)
      rcall("XDEL", dead_key, entry[1])
      moved = moved + 1
      if ARGV[1] == "1" then
        rcall("XADD", events_key, "MAXLEN", "~", ARGV[2], "*",
          "e", "waiting", "i", job_id, "from", "dead")
      end
    end
  end
end
return moved
