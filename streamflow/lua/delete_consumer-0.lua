--[[
  delete_consumer: remove a consumer from the group on every level stream, only when it holds
  no pending entry on any of them (XGROUP DELCONSUMER drops a consumer's pending entries).

  KEYS[1 ..]  one stream per priority level (declared tail)

  ARGV[1]  group
  ARGV[2]  consumer

  Returns  1 when deleted, 0 when it still holds pending entries
  Events   none
]]
local rcall = redis.call
local group, consumer = ARGV[1], ARGV[2]

for _, stream_key in ipairs(KEYS) do
  if rcall("EXISTS", stream_key) == 1 then
    -- a stream without the group (NOGROUP) holds nothing for this consumer
    local ok, held = pcall(rcall, "XPENDING", stream_key, group, "-", "+", 1, consumer)
    if ok and #held > 0 then return 0 end
  end
end
for _, stream_key in ipairs(KEYS) do
  if rcall("EXISTS", stream_key) == 1 then
    pcall(rcall, "XGROUP", "DELCONSUMER", stream_key, group, consumer)
  end
end
return 1
