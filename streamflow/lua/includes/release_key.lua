-- ordered queues: the job `ended` no longer holds `key` (it completed, was dead-lettered or was
-- removed). When the key locks hash still names it, let the next held job of the key go: to its
-- level stream (KEYS[stream_base + level index]), or to the delayed set while its delay runs;
-- free the key when none is held. A job that does not hold the key changes nothing, so a
-- release sent twice is harmless. `o`: locks, delayed, jobs, events (keys), stream_base, now
-- (number), emit (boolean), maxlen. Returns 1 when a held job was let go, else 0.
local function release_key(o, key, ended, held_key)
  if rcall("HGET", o.locks, key) ~= ended then return 0 end
  local item = rcall("LPOP", held_key)
  local record, job_id, due = nil, nil, 0
  while item and not record do
    local bar = string.find(item, "|", 1, true)
    due = tonumber(string.sub(item, 1, bar - 1))
    job_id = string.sub(item, bar + 1)
    record = rcall("HGET", o.jobs, job_id)
    if not record then item = rcall("LPOP", held_key) end  -- removed meanwhile (drain)
  end
  if not record then
    rcall("HDEL", o.locks, key)
    return 0
  end
  rcall("HSET", o.locks, key, job_id)
  if due > o.now then
    rcall("ZADD", o.delayed, due, job_id)
    if o.emit then
      rcall("XADD", o.events, "MAXLEN", "~", o.maxlen, "*", "e", "delayed", "i", job_id,
        "due", due)
    end
  else
    local decoded = cjson.decode(record)
    rcall("HDEL", o.jobs, job_id)
    rcall("XADD", KEYS[o.stream_base + decoded[1]], "*", unpack(decoded, 2))
    if o.emit then
      rcall("XADD", o.events, "MAXLEN", "~", o.maxlen, "*", "e", "waiting", "i", job_id)
    end
  end
  return 1
end
