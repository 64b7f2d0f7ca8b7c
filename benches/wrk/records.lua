-- wrk script: signed single-record writes (POST /v1/records), each request
-- signed in advance, one per line of the file REQUESTS:
--   <Content-Digest>\t<Signature-Input>\t<Signature>\t<JSON body>
-- `cargo bench --bench http_load` writes that file and runs
--   REQUESTS=FILE THREADS=2 wrk -t2 -c64 -d4s --latency -s benches/wrk/records.lua URL
-- Thread n of THREADS sends lines n, n + THREADS, ... once each (a request
-- sent twice would be a replay). A thread that runs out stops and says so;
-- every answer other than 201 is counted.
local threads = {}
local started = 0

function setup(thread)
  thread:set("index", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  local stride = tonumber(os.getenv("THREADS"))
  requests = {}
  local n = 0
  for line in io.lines(os.getenv("REQUESTS")) do
    if n % stride == index then
      local digest, input, signature, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/v1/records", {
        ["Content-Type"] = "application/json",
        ["Content-Digest"] = digest,
        ["Signature-Input"] = input,
        ["Signature"] = signature,
      }, body)
    end
    n = n + 1
  end
  next_request = 1
  refused = 0
  ran_out = 0
end

function request()
  local r = requests[next_request]
  if r == nil then
    ran_out = 1
    wrk.thread:stop()
    return requests[1]
  end
  next_request = next_request + 1
  return r
end

function response(status, headers, body)
  if status ~= 201 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local refused_total, ran_out_total = 0, 0
  for _, thread in ipairs(threads) do
    refused_total = refused_total + thread:get("refused")
    ran_out_total = ran_out_total + thread:get("ran_out")
  end
  io.write(string.format("refused %d\nran_out %d\n", refused_total, ran_out_total))
end
