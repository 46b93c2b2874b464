-- the id of the job in an entry: its "i" field, else "<level>:<entry id>" (a first attempt
-- added without an id)
local function job_id_of(fields, level, entry_id)
  for i = 1, #fields, 2 do
    if fields[i] == "i" then return fields[i + 1] end
  end
  return level .. ":" .. entry_id
end
