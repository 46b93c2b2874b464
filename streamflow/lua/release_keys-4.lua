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
local locks_key, delayed_key, jobs_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local levels = tonumber(ARGV[2])
local emit = ARGV[3] == "1"
local events_maxlen = ARGV[4]

local released = 0
for pos = 5, #ARGV, 3 do
  local key, ended = ARGV[pos], ARGV[pos + 1]
  local held_key = KEYS[4 + levels + tonumber(ARGV[pos + 2])]
  if rcall("HGET", locks_key, key) == ended then
    local item = rcall("LPOP", held_key)
    local record = nil
    local job_id = nil
    local due = 0
    while item and not record do
      local bar = string.find(item, "|", 1, true)
      due = tonumber(string.sub(item, 1, bar - 1))
      job_id = string.sub(item, bar + 1)
      record = rcall("HGET", jobs_key, job_id)
      if not record then item = rcall("LPOP", held_key) end  -- removed meanwhile (drain)
    end
    if not record then
      rcall("HDEL", locks_key, key)
    else
      rcall("HSET", locks_key, key, job_id)
      released = released + 1
      local decoded = cjson.decode(record)
      if due > now then
        rcall("ZADD", delayed_key, due, job_id)
        if emit then
          rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
            "e", "delayed", "i", job_id, "due", due)
        end
      else
        rcall("HDEL", jobs_key, job_id)
        rcall("XADD", KEYS[5 + decoded[1]], "*", unpack(decoded, 2))
        if emit then
          rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*", "e", "waiting", "i", job_id)
        end
      end
    end
  end
end
return released
