-- cancel: a client cancels a job (event: cancel).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] job id
-- Returns: {'missing'} | {'refused', status} | {'cancelled', status before}
-- Transitions: queued | scheduled | active -> cancelled. A running attempt is told on the
-- control channel; its later writes are refused by the fence.
local prefix, id = ARGV[1], ARGV[2]
local jk = job_key(prefix, id)
local f = redis.call('HMGET', jk, 'status', 'posted')
local run = runner(prefix, id)
local status = run and 'active' or f[1]
local facts = {'reason', 'cancelled while ' .. tostring(status)}
if not status then
  return {'missing'}
end
if status == 'queued' then
  local sig = lane_of(f[2])
  -- its lane cannot be read from its record: taken off every lane, so that no claim runs it
  local all = sig and {sig} or keyed_call('SUNION', lanes_key(prefix), suspects_key(prefix))
  for _, one in ipairs(all) do off_lanes(prefix, one, id) end
elseif status == 'scheduled' then
  keyed_call('ZREM', scheduled_key(prefix), id)
elseif status == 'active' then
  facts[#facts + 1] = 'ran'
  facts[#facts + 1] = run[3]
  keyed_call('ZREM', active_key(prefix), id)
  redis.call('PUBLISH', control_key(prefix), cmsgpack.pack({'cancel', id}))
else
  return {'refused', status}
end
local now = now_ms()
local spec = spec_of(prefix, id)
finish_terminal(prefix, jk, id, 'cancelled', now, spec and spec[6] or 1, false, true, nil,
  unpack(facts))
return {'cancelled', status}
