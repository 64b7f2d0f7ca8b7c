-- wrk script: inclusion proofs for random entries of a ledger of SIZE entries.
-- Usage: SIZE=1000005 wrk -t2 -c64 -d20s --latency -s benches/wrk/inclusion.lua http://127.0.0.1:8470
local size = tonumber(os.getenv("SIZE") or "1000")
math.randomseed(os.time())
request = function()
  local seq = math.random(0, size - 1)
  return wrk.format("GET", "/v1/proofs/inclusion?seq=" .. seq .. "&size=" .. size)
end
