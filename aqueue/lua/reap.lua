-- reap: reclaim jobs whose lease lapsed, promote due jobs, forget dead workers.
-- Safe with any number of reapers at once: each lapsed job is handled by exactly one call,
-- since the check and the move are one atomic step.
-- KEYS: none; every key is built from ARGV[1].
-- ARGV[1] queue prefix; ARGV[2] the most jobs to handle in this call
-- Returns: {requeued, dead, promoted}
-- Transitions: active -> queued (attempt counted) | dead (budget spent); scheduled -> queued.
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local promoted = promote_due(prefix, now, limit)
local lapsed = redis.call('ZRANGEBYSCORE', prefix .. 'active', '-inf', '(' .. now,
  'LIMIT', 0, limit)
local requeued, dead = 0, 0
for _, id in ipairs(lapsed) do
  local jk = prefix .. 'job:' .. id
  local f = redis.call('HMGET', jk, 'status', 'attempt', 'released', 'max_att', 'worker',
    'sig', 'score', 'ttl', 'cb')
  if f[1] == 'active' then
    local reason = 'lease lost on attempt ' .. f[2] .. ' (worker ' .. (f[5] or '?') .. ')'
    if budget_spent(f[2], f[3], f[4]) then
      finish_terminal(prefix, jk, id, 'dead', now, f[8], f[9],
        {'reason', reason .. '; retry budget spent', 'err_type', 'LeaseLost', 'err_msg', reason},
        true)
      dead = dead + 1
    else
      redis.call('HSET', jk, 'reason', reason)
      enqueue(prefix, jk, id, f[6], f[7])
      publish_status(prefix, id, 'queued')
      requeued = requeued + 1
    end
  end
end
if #lapsed > 0 then
  redis.call('ZREM', prefix .. 'active', unpack(lapsed))
end
if requeued > 0 then
  redis.call('PUBLISH', prefix .. 'wake', 'reaped')
end
local gone = redis.call('ZRANGEBYSCORE', prefix .. 'workers', '-inf', '(' .. now)
if #gone > 0 then
  redis.call('ZREM', prefix .. 'workers', unpack(gone))
  redis.call('HDEL', prefix .. 'idle', unpack(gone)) -- hand them no more jobs
end
flush_tally(prefix, now)
return {requeued, dead, promoted}
