--[[
  add_jobs: add one or many jobs atomically per job: dedup check, then stream or delayed set.

  A job with a caller-given id is always tracked: its status record (one hash per job, expiring
  after the dedup TTL from its last change) is also its dedup mark: while it exists, the id is
  taken. It holds the token of the call that added the job ("mark"), so a call sent again (its
  reply was lost, the client retried) finds its own record and answers the id again, writing
  nothing twice; another call's record makes a duplicate, and so does a second job with the
  same id in one call. A tracked job added to a stream also records there "where" it is
  ("<level index>:<entry id>", as the where hash does for the moves that follow). When a reply
  TTL is given, the whole answer is also stored under the producer slot's reply key and a call
  finding its token there returns it at once (needed for jobs without a caller-given id).

  KEYS[1]  delayed zset
  KEYS[2]  jobs hash (envelopes of delayed jobs)
  KEYS[3]  events stream
  KEYS[4]  reply key of the sending producer slot ("<token>:<answer>": the items joined by the
           byte 0xFF, which no UTF-8 job id holds, a duplicate as ""; cheaper than JSON for a
           chunk; overwritten by
           the slot's next call)
  KEYS[5]  where hash (job id -> "<level index>:<entry id>"; not written here: the status
           record holds it for the jobs added here)
  KEYS[6 .. 5+L]          one stream per priority level, highest first (declared tail)
  KEYS[6+L ..]            status records and business-key indexes, referenced by index from
                          the job records

  ARGV[1]  now (ms)
  ARGV[2]  L, the number of levels
  ARGV[3]  1 to emit events, 0 not
  ARGV[4]  events MAXLEN (approximate)
  ARGV[5]  dedup TTL (ms): how long a status record outlives its last change
  ARGV[6]  token of this call ("" = none: a resent call is not recognised)
  ARGV[7]  reply record TTL (ms; 0 = no reply record)
  ARGV[8 .. 7+L]  the level names, in KEYS order
  ARGV[8+L ..] job records, each either
           plain (no id, no delay, untracked): "p", level index (0-based), job name, data,
           T, then T more stream fields (trace context)
           or a run of plain jobs of one level, name and trace context (a bulk add's usual
           case: one argument per job): "r", level index, job name, T, T more stream fields,
           count C, then the C jobs' data
           or keyed (a caller-given id, no delay): "k", level index, job id, job name, data,
           options JSON ("" = none), status key index (as below), T, then T more stream
           fields (trace context)
           or general: level index (0-based), due (ms, 0 = now), 1 when the job id is
           caller-given (dedup on its status record) else 0, status key index (0 =
           untracked; else KEYS[5+L+index]), job id ("" = none: named after the entry),
           delayed record ("" when due is 0), job name, field count F, then F stream fields
           and after any job, its business-key indexes: "x", first index key (numbered as
           above), count, index TTL (ms), most job ids an index keeps; nothing is indexed for
           a duplicate

  Returns  one item per job: the job id, or 0 when its id was taken (a duplicate: nothing was
           written). A job added with no id is named "<level>:<entry id>": entry ids are
           unique within one stream only.
  Events   added | delayed, with i (job id) and n (name): only when ARGV[3] is 1 (the
           queue's events="all")
]]
local rcall = redis.call
local delayed_key, jobs_key, events_key, reply_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local where_key = KEYS[5]
local now = ARGV[1]
local levels = tonumber(ARGV[2])
local emit = ARGV[3] == "1"
local events_maxlen = ARGV[4]
local dedup_ttl = ARGV[5]
local token = ARGV[6]
local reply_ttl = ARGV[7]
local record_reply = token ~= "" and reply_ttl ~= "0"

if record_reply then
  -- only the head first: the record of the slot's last call is a whole chunk's answer
  if rcall("GETRANGE", reply_key, 0, #token) == token .. ":" then
    local previous = rcall("GET", reply_key)
    local answer, from = {}, #token + 2
    while from <= #previous + 1 do
      local stop = string.find(previous, "\255", from, true) or #previous + 1
      local item = string.sub(previous, from, stop - 1)
      answer[#answer + 1] = item == "" and 0 or item
      from = stop + 1
    end
    return answer
  end
end

local results = {}
local count = 0 -- the length of results (the length operator searches the table each time)
local refused = false -- whether a duplicate's 0 is among the results

-- whether the job id behind `status_key` is free (a first add); when not, whether this very
-- call added it (the call was sent again): its record holds this call's token and the id did
-- not come earlier in the call
local claimed = {}
local function claim(status_key, job_id)
  local first = not claimed[job_id]
  claimed[job_id] = true
  if rcall("EXISTS", status_key) == 0 then return true, false end
  return false, first and token ~= "" and rcall("HGET", status_key, "mark") == token
end

-- the first status record of a tracked job (no attempt: readers take 1 until a worker starts it)
local function track(status_key, state, name, where)
  if where then
    rcall("HSET", status_key, "state", state, "name", name, "added_ms", now,
      "mark", token, "where", where)
  else
    rcall("HSET", status_key, "state", state, "name", name, "added_ms", now,
      "mark", token)
  end
  rcall("PEXPIRE", status_key, dedup_ttl)
end

-- the "added" event of a job now in its level stream
local function added(job_id, name)
  rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*", "e", "added", "i", job_id,
    "n", name)
end

local pos = 8 + levels
local n = #ARGV
while pos <= n do
  if ARGV[pos] == "x" then
    local job_id = results[count]
    if job_id ~= 0 then
      local first, count = tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
      local cap = tonumber(ARGV[pos + 4])
      for k = first, first + count - 1 do
        local index_key = KEYS[5 + levels + k]
        rcall("ZADD", index_key, now, job_id)
        if rcall("ZCARD", index_key) > cap then
          rcall("ZREMRANGEBYRANK", index_key, 0, -cap - 1)
        end
        rcall("PEXPIRE", index_key, ARGV[pos + 3])
      end
    end
    pos = pos + 5
  elseif ARGV[pos] == "p" then
    local level = tonumber(ARGV[pos + 1])
    local name = ARGV[pos + 2]
    local extra = tonumber(ARGV[pos + 4])
    local entry_id
    if extra == 0 then
      entry_id = rcall("XADD", KEYS[6 + level], "*", "n", name, "d", ARGV[pos + 3])
    else
      entry_id = rcall("XADD", KEYS[6 + level], "*", "n", name, "d", ARGV[pos + 3],
        unpack(ARGV, pos + 5, pos + 4 + extra))
    end
    pos = pos + 5 + extra
    local job_id = ARGV[8 + level] .. ":" .. entry_id
    count = count + 1
    results[count] = job_id
    if emit then
      added(job_id, name)
    end
  elseif ARGV[pos] == "r" then
    local level = tonumber(ARGV[pos + 1])
    local name = ARGV[pos + 2]
    local extra = tonumber(ARGV[pos + 3])
    local first = pos + 5 + extra
    local last = first + tonumber(ARGV[pos + 4 + extra]) - 1
    local stream, prefix = KEYS[6 + level], ARGV[8 + level] .. ":"
    if extra == 0 and not emit then -- a bulk add's usual case: one XADD per job, nothing else
      for i = first, last do
        count = count + 1
        results[count] = prefix .. rcall("XADD", stream, "*", "n", name, "d", ARGV[i])
      end
    else
      for i = first, last do
        local entry_id
        if extra == 0 then
          entry_id = rcall("XADD", stream, "*", "n", name, "d", ARGV[i])
        else
          entry_id = rcall("XADD", stream, "*", "n", name, "d", ARGV[i],
            unpack(ARGV, pos + 4, pos + 3 + extra))
        end
        local job_id = prefix .. entry_id
        count = count + 1
        results[count] = job_id
        if emit then
          added(job_id, name)
        end
      end
    end
    pos = last + 1
  elseif ARGV[pos] == "k" then
    local level = ARGV[pos + 1]
    local job_id = ARGV[pos + 2]
    local name = ARGV[pos + 3]
    local options = ARGV[pos + 5]
    local status_key = KEYS[5 + levels + tonumber(ARGV[pos + 6])]
    local extra = tonumber(ARGV[pos + 7])
    local fresh, replayed = claim(status_key, job_id)
    if fresh then
      local fields = {"n", name, "d", ARGV[pos + 4], "i", job_id}
      if options ~= "" then
        fields[7] = "o"
        fields[8] = options
      end
      for i = pos + 8, pos + 7 + extra do fields[#fields + 1] = ARGV[i] end
      local entry_id = rcall("XADD", KEYS[6 + tonumber(level)], "*", unpack(fields))
      track(status_key, "waiting", name, level .. ":" .. entry_id)
      if emit then
        added(job_id, name)
      end
    end
    pos = pos + 8 + extra
    count = count + 1
    results[count] = (fresh or replayed) and job_id or 0
    refused = refused or results[count] == 0
  else
    local level_arg = ARGV[pos]
    local level = tonumber(level_arg)
    local due = tonumber(ARGV[pos + 1])
    local keyed = ARGV[pos + 2] == "1"
    local status_index = tonumber(ARGV[pos + 3])
    local status_key = status_index > 0 and KEYS[5 + levels + status_index]
    local job_id = ARGV[pos + 4]
    local record = ARGV[pos + 5]
    local name = ARGV[pos + 6]
    local first = pos + 8
    local last = first + tonumber(ARGV[pos + 7]) - 1
    pos = last + 1

    local fresh, replayed = true, false
    if keyed then fresh, replayed = claim(status_key, job_id) end
    count = count + 1
    if replayed then
      results[count] = job_id
    elseif not fresh then
      results[count] = 0
      refused = true
    elseif due > 0 then
      rcall("ZADD", delayed_key, due, job_id)
      rcall("HSET", jobs_key, job_id, record)
      results[count] = job_id
      if status_key then track(status_key, "delayed", name) end
      if emit then
        rcall("XADD", events_key, "MAXLEN", "~", events_maxlen, "*",
          "e", "delayed", "i", job_id, "n", name, "due", due)
      end
    else
      local entry_id = rcall("XADD", KEYS[6 + level], "*", unpack(ARGV, first, last))
      if job_id == "" then
        job_id = ARGV[8 + level] .. ":" .. entry_id
      elseif status_key then
        track(status_key, "waiting", name, level_arg .. ":" .. entry_id)
      else
        rcall("HSET", where_key, job_id, level .. ":" .. entry_id)
      end
      results[count] = job_id
      if emit then
        added(job_id, name)
      end
    end
  end
end
if record_reply then
  local answer = results
  if refused then -- a duplicate is stored as "": a job id may be "0", never empty
    answer = {}
    for i = 1, count do answer[i] = results[i] == 0 and "" or results[i] end
  end
  rcall("SET", reply_key, token .. ":" .. table.concat(answer, "\255"), "PX", reply_ttl)
end
return results
