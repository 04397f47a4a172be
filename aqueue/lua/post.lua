-- post: enqueue a batch of new jobs (event: post).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix `aq:{q}:`
-- ARGV[2]  idempotency key lifetime, ms
-- ARGV[3]  the jobs, msgpack: [[id, key ('' = none), lane signature, priority (-100..100),
--          delay ms (0 = none), at (epoch ms, 0 = none), [field, value, ...]], ...]
--          (one packed argument rather than thousands: far cheaper to send and to parse)
-- Returns: the n job ids in order; where a key or the id was already taken, the existing id.
-- Transitions: (none) -> queued | scheduled.
local prefix = ARGV[1]
local key_ttl = ARGV[2]
local jobs = cmsgpack.unpack(ARGV[3])
local n = #jobs
-- Ids are fresh random ones, made for this call, and a batch is written whole or not at all.
-- So if its first job without a key exists, this is the same call sent again (a retry after
-- a lost reply): answer as the first time did and write nothing. (Keyed jobs dedupe by key.)
for j = 1, n do
  if jobs[j][2] == '' then
    if redis.call('EXISTS', prefix .. 'job:' .. jobs[j][1]) == 1 then
      local ids = {}
      for k = 1, n do
        local key = jobs[k][2]
        ids[k] = (key ~= '' and redis.call('GET', prefix .. 'key:' .. key)) or jobs[k][1]
      end
      return ids
    end
    break
  end
end
local now = now_ms()
local seq = redis.call('INCRBY', prefix .. 'seq', n) - n
local ids = {}
local ready = {} -- lane signature -> {score, id, ...}
local later = {} -- {due, id, ...}
for j = 1, n do
  local job = jobs[j]
  local id, key, sig, prio, delay, at = job[1], job[2], job[3], job[4], job[5], job[6]
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
  if existing then
    ids[j] = existing
  else
    ids[j] = id
    local score = (100 - prio) * 17592186044416 + seq + j -- priority band, then FIFO
    local due = 0
    if at > 0 then due = at elseif delay > 0 then due = now + delay end
    local fields = job[7]
    if due > now then
      later[#later + 1] = due
      later[#later + 1] = id
      fields[#fields + 1] = 'due'
      fields[#fields + 1] = due
      fields[#fields + 1] = 'status'
      fields[#fields + 1] = 'scheduled'
    else
      ready[sig] = ready[sig] or {}
      local lane = ready[sig]
      lane[#lane + 1] = score
      lane[#lane + 1] = id
      fields[#fields + 1] = 'status'
      fields[#fields + 1] = 'queued'
    end
    -- attempt, released: absent reads as 0 (one field fewer each, on every queued job)
    redis.call('HSET', prefix .. 'job:' .. id, 'posted', now, 'score', score, unpack(fields))
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
