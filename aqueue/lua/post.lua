-- post: enqueue a batch of new jobs (event: post).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix `aq:{q}:`
-- ARGV[2]  idempotency key lifetime, ms
-- ARGV[3]  the jobs, msgpack: [[id, key ('' = none), lane signature, priority (-100..100),
--          delay ms (0 = none), at (epoch ms, 0 = none), [field, value, ...]], ...]
--          (one packed argument rather than thousands: far cheaper to send and to parse)
-- Returns: the n job ids in order; where a key or the id was already taken, the existing id.
-- Transitions: (none) -> queued | scheduled | active (handed to a waiting worker).
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
local now_s = int(now)
local seq = redis.call('INCRBY', prefix .. 'seq', n) - n
local ids = {}
local ready = {} -- lane signature -> {score, id, ...}
local later = {} -- {due, id, ...}

-- Workers that wait for work (claim.lua registered them, with their free places) are handed
-- ready jobs directly, leased to them as a claim would: they start without a claim round trip.
local idle = {}
local registered = redis.call('HGETALL', prefix .. 'idle')
for k = 1, #registered, 2 do
  local free, lease, names = string.match(registered[k + 1], '^(%d+)|(%d+)|(.*)$')
  local have = {}
  for name in string.gmatch(names, '[^,]+') do have[name] = true end
  idle[#idle + 1] = {id = registered[k], free = tonumber(free), lease = tonumber(lease),
    deadline = int(now + tonumber(lease)), names = names, have = have, rows = {}, jobs = {},
    leases = {}, bytes = 0}
end
-- Big messages are not pushed: a subscriber's output buffer has a hard limit (32 MB by
-- default) past which Redis drops the connection, and the pushed jobs with it.
local PUSH_MAX_BYTES = 65536
local function taker(sig, msg)
  if #msg > PUSH_MAX_BYTES then return nil end
  for _, w in ipairs(idle) do
    if w.free > 0 and w.bytes + #msg <= 16 * PUSH_MAX_BYTES and fits(w.have, true, sig) then
      w.bytes = w.bytes + #msg
      return w
    end
  end
  return nil
end
local function batch_for_lane(sig, score, id)
  ready[sig] = ready[sig] or {}
  local lane = ready[sig]
  lane[#lane + 1] = score
  lane[#lane + 1] = id
end
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
    local score = int((100 - prio) * 17592186044416 + seq + j) -- priority band, then FIFO
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
      local f, w = {}, nil
      if #idle > 0 then -- only then are the job's fields needed by name (a bulk post: not)
        for k = 1, #fields, 2 do f[fields[k]] = fields[k + 1] end
        w = taker(sig, f.msg)
      end
      if w then -- the claim's work, done here: active under w's lease, attempt 1
        w.free = w.free - 1
        local row = {id, 1, f.msg, f.fns or sig, f.timeout or '', f.max_att, 0, f.retry or '', now}
        for _, v in ipairs(row) do w.rows[#w.rows + 1] = v end
        w.jobs[#w.jobs + 1] = {id, score, sig}
        w.leases[#w.leases + 1] = w.deadline
        w.leases[#w.leases + 1] = id
        local leased = {'status', 'active', 'attempt', '1', 'worker', w.id, 'started', now_s}
        for _, v in ipairs(leased) do fields[#fields + 1] = v end
      else
        batch_for_lane(sig, score, id)
        fields[#fields + 1] = 'status'
        fields[#fields + 1] = 'queued'
      end
    end
    -- attempt, released: absent reads as 0 (one field fewer each, on every queued job)
    redis.call('HSET', prefix .. 'job:' .. id, 'posted', now_s, 'score', score, unpack(fields))
  end
end
for _, w in ipairs(idle) do
  if #w.jobs > 0 then
    -- PUBLISH says how many received it: none means the worker is gone (killed, or its
    -- subscription dropped); then its jobs go to their lanes as if it had never been idle
    if redis.call('PUBLISH', prefix .. 'push:' .. w.id, cmsgpack.pack(w.rows)) > 0 then
      zadd_all(prefix .. 'active', w.leases)
      if w.free > 0 then
        redis.call('HSET', prefix .. 'idle', w.id, w.free .. '|' .. w.lease .. '|' .. w.names)
      else
        redis.call('HDEL', prefix .. 'idle', w.id)
      end
    else
      redis.call('HDEL', prefix .. 'idle', w.id)
      for _, j in ipairs(w.jobs) do
        local jk = prefix .. 'job:' .. j[1]
        redis.call('HSET', jk, 'status', 'queued', 'attempt', 0)
        redis.call('HDEL', jk, 'worker', 'started')
        batch_for_lane(j[3], j[2], j[1])
      end
    end
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
