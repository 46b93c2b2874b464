--[[
  fetch_jobs: read up to COUNT new entries, highest priority level first (strict priority).

  KEYS[1]        meta hash (paused flag)
  KEYS[2 .. ]    one stream per priority level, highest first (declared tail)

  ARGV[1]  group
  ARGV[2]  consumer
  ARGV[3]  count: how many entries the worker has room for

  Returns  0 when the queue is paused; {} when nothing waits; else a flat list
           {level index (0-based), entries, ...}
           where entries is the XREADGROUP reply for that stream: {{id, {f1, v1, ...}}, ...}
  Events   none
]]
local rcall = redis.call
local meta_key = KEYS[1]
local group, consumer = ARGV[1], ARGV[2]
local remaining = tonumber(ARGV[3])

if rcall("HGET", meta_key, "paused") == "1" then
  return 0
end

local out = {}
for i = 2, #KEYS do
  if remaining <= 0 then break end
  local reply = rcall("XREADGROUP", "GROUP", group, consumer, "COUNT", remaining,
    "STREAMS", KEYS[i], ">")
  if reply then
    local entries = reply[1][2]
    out[#out + 1] = i - 2
    out[#out + 1] = entries
    remaining = remaining - #entries
  end
end
return out
