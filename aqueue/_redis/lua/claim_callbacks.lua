-- claim_callbacks: take up to n callbacks to deliver, each under a lease.
-- Sources, in order: deliveries whose dispatcher stopped mid-way (lease lapsed), retries that
-- are due, then the outbox (written by finish_terminal atomically with the job's outcome).
-- A delivery lost to a dispatcher's crash is not the receiver's failure: it is tried again at
-- once without spending one of the job's attempts (cb_attempts), counted apart (cb_crashes)
-- and given up after `crashes` such re-tries, so that a receiver whose answer kills
-- dispatchers (a huge body, say) is not called for ever.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] lease ms; ARGV[3] n; ARGV[4] most re-tries after crashes
-- Returns: {ms until the next retry is due or -1, then per callback: job id, token}
local prefix, lease = ARGV[1], tonumber(ARGV[2])
local n, crashes = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local active, retry = callbacks_active_key(prefix), callbacks_retry_key(prefix)

local lapsed = redis.call('ZRANGEBYSCORE', active, '-inf', '(' .. now, 'LIMIT', 0, n)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', active, id)
  local jk = job_key(prefix, id)
  -- a record deleted mid-delivery (expired, purged) is not written to: HINCRBY would make
  -- a record of callback fields alone, with no status
  if redis.call('EXISTS', jk) == 1 then
    local stops = incr(jk, 'cb_crashes', 1)
    if stops > crashes then
      callback_log(prefix, id, now, 'dispatcher stopped mid-delivery ' .. stops ..
                   ' times: given up')
      redis.call('HSET', jk, 'cb_state', 'failed')
    else
      callback_log(prefix, id, now, 'dispatcher stopped mid-delivery: tried again, ' ..
                   'not counted as an attempt')
      redis.call('ZADD', retry, now, id)
    end
  end
end

local ids = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, n)
if #ids > 0 then
  redis.call('ZREM', retry, unpack(ids))
end
if #ids < n then
  local fresh = keyed_call('LPOP', outbox_key(prefix), n - #ids)
  if fresh then
    for _, id in ipairs(fresh) do ids[#ids + 1] = id end
  end
end

local out = {-1}
for _, id in ipairs(ids) do
  local jk = job_key(prefix, id)
  if redis.call('EXISTS', jk) == 1 then
    local token = incr(jk, 'cb_token', 1)
    redis.call('HSET', jk, 'cb_state', 'delivering')
    redis.call('ZADD', active, now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = token
  end
end
local nxt = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = math.max(0, tonumber(nxt[2]) - now) end
return out
