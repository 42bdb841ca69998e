-- wrk script for the standalone simulator alone (docs/benchmarks.md, "The simulator on an event loop"):
-- POSTs hello_world for send_bench.py's account, each request to a new recipient (so each send
-- creates a handset and looks its name up, as a campaign's sends do). wrk is C: the client costs
-- the two cores next to nothing, unlike send_bench.py's Python client threads.
--
-- Set up once (the bench account, hello_world in the state dir, the limit high enough to accept all):
--   export SIMULATOR_STATE_DIR=/tmp/simwrk DATABASE_URL=postgres://.../wcp_..._bench SECRET_KEY=... FIELD_ENCRYPTION_KEY=...
--   .venv/bin/python -c "import sys, pathlib; sys.path.insert(0, 'bench'); import send_bench; \
--     send_bench.setup(pathlib.Path('/tmp/simwrk')); send_bench.ensure_audience(0, limit=1_000_000, sim_port=9912)"
-- Run (the simulator's CPU from /proc/<pid>/stat before and after):
--   .venv/bin/python manage.py runsimulator --port 9912 --no-webhooks [--interface wsgi --threads 64]
--   wrk -t1 -c32 -d10s -s bench/sim_wrk.lua http://127.0.0.1:9912/ -- 20000000
-- The argument is the first recipient's number (+49151 and 8 digits); give each run another one.
local counter = 0
function init(args)
  base = tonumber(args[1] or "20000000")
end
function request()
  counter = counter + 1
  local body = '{"messaging_product":"whatsapp","to":"+49151' .. string.format("%08d", base + counter) ..
    '","type":"template","template":{"name":"hello_world","language":{"code":"en_US"}}}'
  return wrk.format("POST", "/simulator/graph/v23.0/990000000000002/messages",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer send-bench-token"}, body)
end
