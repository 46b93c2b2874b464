--[[
  clean_jobs: remove up to COUNT finished or delayed jobs older than a cut-off, one chunk per
  call (the caller loops, so Redis is never blocked long). Two cleans running at once never
  count a job twice: each removal is counted by what XDEL / ZREM answered.

  KEYS[1]  the set cleaned: done stream, dead stream, or delayed zset
  KEYS[2]  jobs hash (envelopes of delayed jobs; any key for the streams)

  ARGV[1]  kind: stream | delayed
  ARGV[2]  cut-off (ms, inclusive: a job of that very millisecond goes too, so older_than=0
           takes everything up to now): streams by entry time (finished/dead-lettered), delayed
           jobs by their enqueue time
  ARGV[3]  most jobs to look at in this call
  ARGV[4]  delayed only: the rank to go on from ("" from the start); a job added meanwhile
           with an earlier due time shifts the ranks, so a clean running beside adds may look
           at a job twice (harmless) or miss one (the next clean gets it)

  Returns  {removed, cursor}: cursor "" when nothing older is left to look at
  Events   none
]]
local rcall = redis.call
local set_key, jobs_key = KEYS[1], KEYS[2]
local cutoff, count = tonumber(ARGV[2]), tonumber(ARGV[3])

if ARGV[1] == "stream" then
  local entries = rcall("XRANGE", set_key, "-", cutoff, "COUNT", count)
  if #entries == 0 then return {0, ""} end
  local ids = {}
  for i, entry in ipairs(entries) do ids[i] = entry[1] end
  local removed = rcall("XDEL", set_key, unpack(ids))
  return {removed, #entries < count and "" or "more"}
end

-- delayed jobs are ordered by due time, not age: walk the set by rank from the cursor; the
-- jobs removed in this call no longer take a rank, so the next call starts that much earlier
local from = ARGV[4] == "" and 0 or tonumber(ARGV[4])
local members = rcall("ZRANGE", set_key, from, from + count - 1)
if #members == 0 then return {0, ""} end
local removed = 0
for _, job_id in ipairs(members) do
  local record = rcall("HGET", jobs_key, job_id)
  local enqueued = nil
  if record then
    local decoded = cjson.decode(record)
    for j = 2, #decoded, 2 do
      if decoded[j] == "t" then enqueued = tonumber(decoded[j + 1]) end
    end
  end
  if enqueued == nil or enqueued <= cutoff then
    removed = removed + rcall("ZREM", set_key, job_id)
    rcall("HDEL", jobs_key, job_id)
  end
end
if #members < count then return {removed, ""} end
return {removed, tostring(from + #members - removed)}
