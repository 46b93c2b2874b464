-- A full Redis (maxmemory reached, noeviction) refuses the first write of a script that could
-- grow memory (XADD, ZADD, HSET...), but no write after the script's first one: a script is
-- never stopped half-way. Acks must go through when Redis is full (they, and the trimming they
-- allow, are what frees memory), so a script that acknowledges
--   1. sends its first optional write (an event) through `optional`, before any other write:
--      refused means Redis is full (`full` is then true), and `optional` skips the rest;
--   2. calls `allow_writes` before its required writes (the dead letter, the next attempt):
--      a no-op XACK, a write Redis never refuses for memory, after which they go through.
local full = false
local function optional(...)
  if full then return false end
  local reply = redis.pcall(...)
  if type(reply) == "table" and reply.err then
    if string.sub(reply.err, 1, 3) ~= "OOM" then error(reply) end
    full = true
    return false
  end
  return reply
end
local function allow_writes(stream_key, group)
  rcall("XACK", stream_key, group, "0-0")
end
