-- heartbeat: renew this worker's leases and its liveness, in one step for all its jobs.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  lease, ms
-- ARGV[4]  worker info (encoded), kept as long as the worker's liveness
-- ARGV[5]  the worker's listener names, joined by ',': its kind is kept live (see lane_served
--          in _lib.lua)
-- ARGV[6..] pairs: job id, attempt
-- Returns: the ids whose lease this worker no longer holds (reclaimed, cancelled, finished):
--          the worker stops running them.
-- Transitions: none (an active job's lease deadline moves).
local prefix, worker = ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local now = now_ms()
local deadline = int(now + lease) -- as text: see int in _lib.lua
keyed_call('ZADD', workers_key(prefix), deadline, worker)
redis.call('SET', worker_key(prefix, worker), ARGV[4], 'PX', int(lease))
local names = {}
for name in string.gmatch(ARGV[5], '[^,]+') do names[#names + 1] = name end
if #names > 0 then
  local kind, have = kind_of(names)
  serve_kind(prefix, kind, have, deadline)
end
local renew, lost = {}, {}
local ids = {}
for k = 6, #ARGV, 2 do ids[#ids + 1] = ARGV[k] end
local runs = #ids > 0 and keyed_call('HMGET', running_key(prefix), unpack(ids)) or {}
for j, id in ipairs(ids) do
  if holds(runs[j], worker, ARGV[5 + 2 * j]) then
    renew[#renew + 1] = deadline
    renew[#renew + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #renew > 0 then
  keyed_call('ZADD', active_key(prefix), 'XX', unpack(renew))
end
-- How many jobs it holds, for reap.lua; its claims add to it until the next beat. Kept well
-- past its liveness: its jobs' leases lapse after that.
redis.call('SET', held_key(prefix, worker), int(#renew / 2), 'PX', int(4 * lease))
return lost
