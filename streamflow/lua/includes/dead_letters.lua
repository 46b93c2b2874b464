-- dead letters: keep the dead stream within its retention (exact MAXLEN, "0" keeps all; MINID,
-- "0" for no age limit)
local function trim_dead(dead_key, maxlen, minid)
  if maxlen ~= "0" then rcall("XTRIM", dead_key, "MAXLEN", maxlen) end
  if minid ~= "0" then rcall("XTRIM", dead_key, "MINID", minid) end
end
