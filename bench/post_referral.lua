-- wrk script: POST a new referral on every request, with unique ids, and count statuses.
--
-- Arguments after "--": <template file> <run tag> <API key>
-- The template is bench/payload.py's referral_template(): "@UID@" becomes the Bundle,
-- Bundle.identifier and MessageHeader id, "@REF@" the ServiceRequest identifier value.
-- Each wrk thread gets its own id in setup(), so ids never collide between threads.
--
-- done() prints one line "BENCH_RESULT {json}" that bench/load.py reads, and, when any
-- response was not 2xx, "BENCH_FIRST_BAD <status> <body start>".

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state); globals so done() can read them.
ok = 0
bad = 0
first_bad = ""
local template, run_tag
local counter = 0
local fills = {}

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open template " .. tostring(args[1]))
  template = file:read("*a")
  file:close()
  run_tag = tonumber(args[2])
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  wrk.headers["Content-Type"] = "application/fhir+json"
end

function request()
  counter = counter + 1
  fills.UID = string.format("%08d-%04d-4000-8000-%012d", run_tag, tid, counter)
  fills.REF = string.format("bench-%d-%d-%d", run_tag, tid, counter)
  local body = template:gsub("@(%u+)@", fills)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 400):gsub("\n", " ")
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    if first == "" then
      first = thread:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "ok": %d, "non2xx": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, "mean_us": %.1f, "p50_us": %d, '
      .. '"p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, total_ok, total_bad, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
  if first ~= "" then
    io.write("BENCH_FIRST_BAD " .. first .. "\n")
  end
end
