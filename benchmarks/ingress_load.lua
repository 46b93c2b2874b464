-- wrk script of benchmarks/ingress.py: sends pre-signed webhooks, each one once.
--
--   wrk -t1 -c16 -d6s -s benchmarks/ingress_load.lua http://127.0.0.1:PORT/ -- FILE
--
-- FILE holds raw HTTP/1.1 requests, each preceded by its length in bytes and a newline
-- (written by benchmarks/ingress.py: real HMAC signatures, distinct event ids). Thread n of
-- N sends requests n, n+N, n+2N... When a thread has sent all of its requests it starts
-- again from its first one (those are duplicates: answered 200 without a new job) and counts
-- them in "repeated", so the benchmark can say so. done() prints one JSON line.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(args[1], "rb"))
   local data = file:read("*a")
   file:close()
   local step = tonumber(args[2]) or 1
   requests, sent, repeated = {}, 0, 0
   local pos, k = 1, 0
   while pos <= #data do
      local newline = data:find("\n", pos, true)
      local length = tonumber(data:sub(pos, newline - 1))
      if k % step == tid then
         requests[#requests + 1] = data:sub(newline + 1, newline + length)
      end
      k = k + 1
      pos = newline + 1 + length
   end
end

function request()
   sent = sent + 1
   if sent > #requests then
      repeated = repeated + 1
      return requests[(sent - 1) % #requests + 1]
   end
   return requests[sent]
end

function done(summary, latency, requests)
   local repeated_total = 0
   for _, thread in ipairs(threads) do
      repeated_total = repeated_total + thread:get("repeated")
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
      '"status": %d, "timeout": %d, "repeated": %d, "p50_us": %d, "p90_us": %d, ' ..
      '"p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      repeated_total, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
