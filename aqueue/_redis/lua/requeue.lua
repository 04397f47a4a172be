-- requeue: put a dead, failed or cancelled job back on its lane (event: requeue).
-- Its retry budget starts afresh; the attempt number keeps growing, so it stays a valid fence.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] job id
-- Returns: {'missing'} | {'refused', status} | {'queued', status before}
-- Transitions: dead | failed | cancelled -> queued.
local prefix, id = ARGV[1], ARGV[2]
local jk = job_key(prefix, id)
local f = redis.call('HMGET', jk, 'status', 'ran', 'posted', 'finished', 'cb_state')
local status = f[1]
if not status then
  return {'missing'}
end
if status ~= 'dead' and status ~= 'failed' and status ~= 'cancelled' then
  return {'refused', status}
end
local sig, score = lane_of(f[3])
if not sig then -- checked before the first write: a failed script keeps its writes
  return {'refused', status .. ', and ' .. UNREADABLE_LANE}
end
keyed_call('ZREM', dead_key(prefix), id)
if status ~= 'dead' then -- its record was to expire (a dead letter's is kept)
  local spec = spec_of(prefix, id)
  out_of_expiries(prefix, id, f[4], spec and spec[6] or 1) -- the ttl finish_terminal had
end
local attempts = f[2] and select(2, run_parts(f[2])) or '0'
keyed_call('HSET', tries_key(prefix), id, tries_entry(attempts, attempts)) -- a fresh budget
redis.call('HSET', jk, 'released', attempts, 'reason', 'requeued from ' .. status, 'finished', '')
local delivery = f[5]
if delivery == 'pending' or delivery == 'delivering' or delivery == 'retrying' then
  -- a delivery still under way is withdrawn: the job calls back once it ends again, and a
  -- dispatcher holding it now finds it stale (callback_done.lua)
  keyed_call('LREM', outbox_key(prefix), 0, id)
  keyed_call('ZREM', callbacks_active_key(prefix), id)
  keyed_call('ZREM', callbacks_retry_key(prefix), id)
end
redis.call('HDEL', jk, 'cb_attempts', 'cb_crashes', 'cb_state') -- called back afresh
enqueue(prefix, jk, id, sig, score)
publish_status(prefix, id, 'queued')
redis.call('PUBLISH', wake_key(prefix), 'requeued')
return {'queued', status}
