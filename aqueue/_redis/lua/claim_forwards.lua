-- claim_forwards: take up to n jobs' outputs to forward to their queues, each under a lease.
-- Sources, in order: forwardings whose forwarder stopped mid-way (lease lapsed), then the
-- forward outbox (written by finish.lua atomically with the job's completion). A forwarding
-- taken again posts again what may be posted already: the outputs' ids are derived from
-- their job, queue and place, and a post of an id that exists returns it (post.lua), so
-- every output is posted once however often its forwarding is taken.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] lease ms; ARGV[3] n
-- Returns: {ms until the first lease another forwarder holds lapses, or -1; then per job:
--          id, outputs (as finish.lua stored them), root (its record's, or '' if none)}
local prefix, lease, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local active = forwarding_key(prefix)
local ids = keyed_call('ZRANGEBYSCORE', active, '-inf', '(' .. now, 'LIMIT', 0, n)
local held = keyed_call('ZRANGEBYSCORE', active, now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = {held[2] and math.max(0, tonumber(held[2]) - now) or -1}
if #ids > 0 then -- forwardings a stopped forwarder left, counted for `aqueue status`
  incr(stats_key(prefix), 'forward_retakes', #ids)
end
if #ids < n then
  local fresh = keyed_call('LPOP', forward_key(prefix), n - #ids)
  if fresh then
    for _, id in ipairs(fresh) do ids[#ids + 1] = id end
  end
end
for _, id in ipairs(ids) do
  local packed = keyed_call('HGET', outputs_key(prefix), id)
  if packed then
    keyed_call('ZADD', active, now + lease, id)
    local root = redis.pcall('HGET', job_key(prefix, id), 'root')
    if type(root) ~= 'string' then root = '' end -- none, or a record of the wrong type
    out[#out + 1] = id
    out[#out + 1] = packed
    out[#out + 1] = root
  else -- forwarded meanwhile by another forwarder (its lease had lapsed): nothing left
    keyed_call('ZREM', active, id)
  end
end
return out
