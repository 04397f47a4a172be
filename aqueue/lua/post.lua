-- post: enqueue a batch of new jobs (event: post).
-- KEYS: none; every key is built from ARGV[1].
-- ARGV[1]  queue prefix `aq:{q}:`
-- ARGV[2]  n, the number of jobs
-- ARGV[3]  idempotency key lifetime, ms
-- then, per job: id, key ('' = none), lane signature, priority (-100..100),
--   delay ms (0 = none), at (epoch ms, 0 = none), nfields, then nfields field/value pairs.
-- Returns: the n job ids in order; where a key or the id was already taken, the existing id.
-- Transitions: (none) -> queued | scheduled.
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local key_ttl = ARGV[3]
local now = now_ms()
local seq = redis.call('INCRBY', prefix .. 'seq', n) - n
local ids = {}
local ready = {} -- lane signature -> {score, id, ...}
local later = {} -- {due, id, ...}
local i = 4
for j = 1, n do
  local id, key, sig = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local prio, delay, at = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local nf = tonumber(ARGV[i + 6])
  local first = i + 7
  i = first + 2 * nf
  local jk = prefix .. 'job:' .. id
  local existing = nil
  if key ~= '' then
    local kk = prefix .. 'key:' .. key
    existing = redis.call('GET', kk)
    if existing and redis.call('EXISTS', prefix .. 'job:' .. existing) == 0 then
      existing = nil
    end
    if not existing then
      redis.call('SET', kk, id, 'PX', key_ttl)
    end
  end
  if not existing and redis.call('EXISTS', jk) == 1 then
    existing = id -- a retried post of the same job
  end
  if existing then
    ids[j] = existing
  else
    ids[j] = id
    local score = (100 - prio) * 17592186044416 + seq + j -- priority band, then FIFO
    local due = 0
    if at > 0 then due = at elseif delay > 0 then due = now + delay end
    local status = 'queued'
    if due > now then
      status = 'scheduled'
      later[#later + 1] = due
      later[#later + 1] = id
    else
      ready[sig] = ready[sig] or {}
      local lane = ready[sig]
      lane[#lane + 1] = score
      lane[#lane + 1] = id
    end
    redis.call('HSET', jk, 'status', status, 'posted', now, 'score', score, 'attempt', 0,
      'released', 0, 'due', due, unpack(ARGV, first, first + 2 * nf - 1))
  end
end
local woke = false
for sig, lane in pairs(ready) do
  zadd_all(prefix .. 'lane:' .. sig, lane)
  redis.call('SADD', prefix .. 'lanes', sig)
  woke = true
end
if #later > 0 then
  zadd_all(prefix .. 'scheduled', later)
end
redis.call('HINCRBY', prefix .. 'stats', 'posted', n)
if woke then
  redis.call('PUBLISH', prefix .. 'wake', 'posted')
end
return ids
