--[[
  release_keys: the job holding a key of an ordered queue ended (completed or dead): let the
  next held job of that key go (to its level stream, or to the delayed set while its delay
  runs), or free the key when none is held. A job that does not hold the key changes nothing,
  so a release sent twice is harmless.

  KEYS[1]  key locks hash: key -> job id of the one job of that key that is out
  KEYS[2]  delayed zset
  KEYS[3]  jobs hash (envelopes of delayed and held jobs)
  KEYS[4]  events stream
  KEYS[5 .. 4+L]   one stream per priority level, highest first (declared tail)
  KEYS[5+L ..]     held lists, referenced by index from the releases

  ARGV[1]  now (ms)
  ARGV[2]  L, the number of levels
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5 ..] releases, each: key, job id that ended, held list index (KEYS[4+L+index])

  Returns  how many held jobs were let go
  Events   waiting | delayed, with i (job id), for each job let go
]]
local rcall = redis.call

--- @include "release_key"

local levels = tonumber(ARGV[2])
local o = {locks = KEYS[1], delayed = KEYS[2], jobs = KEYS[3], events = KEYS[4], stream_base = 5,
  now = tonumber(ARGV[1]), emit = ARGV[3] == "1", maxlen = ARGV[4]}

local released = 0
for pos = 5, #ARGV, 3 do
  released = released + release_key(o, ARGV[pos], ARGV[pos + 1],
    KEYS[4 + levels + tonumber(ARGV[pos + 2])])
end
return released
