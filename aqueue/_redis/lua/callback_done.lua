-- callback_done: record one delivery attempt of a job's callback.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] job id; ARGV[3] token (from claim_callbacks);
-- ARGV[4] 'delivered' or 'failed'; ARGV[5] retry delay ms; ARGV[6] most attempts;
-- ARGV[7] what happened (logged on the job)
-- Returns: 'delivered' | 'retrying' | 'failed' (no attempts left), 'stale' when this
-- dispatcher no longer holds the delivery (its lease lapsed and another took it), or 'gone'
-- when the job's record was deleted meanwhile (expired, purged): the delivery is let go of.
local prefix, id, token = ARGV[1], ARGV[2], ARGV[3]
local jk = job_key(prefix, id)
local active = callbacks_active_key(prefix)
if redis.call('EXISTS', jk) == 0 then
  redis.call('ZREM', active, id)
  return 'gone'
end
if redis.call('HGET', jk, 'cb_token') ~= token or not redis.call('ZSCORE', active, id) then
  return 'stale'
end
local now = now_ms()
redis.call('ZREM', active, id)
local attempts = incr(jk, 'cb_attempts', 1)
callback_log(prefix, id, now, ARGV[7])
local state = 'delivered'
if ARGV[4] ~= 'delivered' then
  if attempts >= tonumber(ARGV[6]) then
    state = 'failed'
  else
    state = 'retrying'
    keyed_call('ZADD', callbacks_retry_key(prefix), now + tonumber(ARGV[5]), id)
  end
end
redis.call('HSET', jk, 'cb_state', state)
return state
