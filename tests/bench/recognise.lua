-- wrk script: GET /v1/session, rotating over the credentials in $CREDENTIALS (one per line),
-- and a JSON summary line at the end for bench.py.
local credentials = {}
for line in io.lines(os.getenv("CREDENTIALS")) do
  credentials[#credentials + 1] = line
end
local cookie = os.getenv("COOKIE_NAME") or "__Host-websession"
local path = os.getenv("BENCH_PATH") or "/v1/session"
local counter = math.random(#credentials)

request = function()
  counter = counter + 1
  local credential = credentials[(counter % #credentials) + 1]
  return wrk.format("GET", path, { ["Cookie"] = cookie .. "=" .. credential })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "non2xx": %d, "socket_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout, e.timeout))
end
