-- Shared helpers, prepended to every script by aqueue/_scripts.py (EVAL scripts cannot share).
-- Keys are built from the queue's prefix `aq:{<queue>}:`; its hash tag keeps them in one slot.
-- Times are milliseconds on Redis's own clock, so clocks of clients and workers never matter.

-- A number handed to redis.call becomes a string by "%.14g", a slow path of printf (a tenth
-- of Redis's time in a drain): the hot paths format their integers once, with "%d".
local function int(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- `result` (a complete job's, when small) rides along, saving its waiter a read.
local function publish_status(prefix, id, status, result)
  redis.call('PUBLISH', prefix .. 'events', cmsgpack.pack({id, 'status', status, result}))
end

-- Put a job id on its lane (the caller records its status).
local function onto_lane(prefix, sig, score, id)
  redis.call('ZADD', prefix .. 'lane:' .. sig, score, id)
  redis.call('SADD', prefix .. 'lanes', sig)
end

-- Put a job (already out of every other list) on its lane as `queued`.
local function enqueue(prefix, jk, id, sig, score)
  onto_lane(prefix, sig, score, id)
  redis.call('HSET', jk, 'status', 'queued')
end

-- Has a job used up its retry budget with this attempt? (Releases at shutdown are not
-- counted against it.)
local function budget_spent(attempt, released, max_att)
  return tonumber(attempt) - tonumber(released or 0) >= tonumber(max_att)
end

-- Move scheduled jobs that are due onto their lanes. Returns how many moved.
local function promote_due(prefix, now, limit)
  local due = redis.call('ZRANGEBYSCORE', prefix .. 'scheduled', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local jk = prefix .. 'job:' .. id
    local f = redis.call('HMGET', jk, 'sig', 'score', 'status')
    if f[3] == 'scheduled' then
      enqueue(prefix, jk, id, f[1], f[2])
      publish_status(prefix, id, 'queued')
    end
  end
  if #due > 0 then
    redis.call('ZREM', prefix .. 'scheduled', unpack(due))
    redis.call('PUBLISH', prefix .. 'wake', 'promoted')
  end
  return #due
end

-- Terminal outcomes of this call, counted once at its end by flush_tally.
local tally = {}

-- Record a terminal status, with `extra` (a flat field/value list) in the same write: expiry
-- (dead letters are kept until purged), the callback outbox (written in this same atomic
-- step, so no outcome is ever called back twice or never), and an event when `watched` (a
-- client awaits the job: see watch.lua; nobody else needs it).
local function finish_terminal(prefix, jk, id, status, now, ttl_s, callback, extra, watched)
  local fields = extra or {}
  fields[#fields + 1] = 'status'
  fields[#fields + 1] = status
  fields[#fields + 1] = 'finished'
  fields[#fields + 1] = now
  local calls_back = callback and callback ~= '' and status ~= 'cancelled'
  if calls_back then
    fields[#fields + 1] = 'cb_state'
    fields[#fields + 1] = 'pending'
  end
  redis.call('HSET', jk, unpack(fields))
  if status == 'dead' then
    redis.call('ZADD', prefix .. 'dead', now, id)
  elseif ttl_s and ttl_s ~= '' then
    redis.call('EXPIRE', jk, ttl_s)
  end
  if calls_back then
    redis.call('RPUSH', prefix .. 'outbox', id)
    redis.call('PUBLISH', prefix .. 'callbacks', id)
  end
  tally[status] = (tally[status] or 0) + 1
  if watched then
    local result = nil
    if status == 'complete' and fields[1] == 'result' and #fields[2] <= 4096 then
      result = fields[2]
    end
    publish_status(prefix, id, status, result)
  end
end

-- ZADD many (score, member) pairs, in chunks that stay within Lua's unpack limit.
local function zadd_all(key, pairs)
  for k = 1, #pairs, 2000 do
    redis.call('ZADD', key, unpack(pairs, k, math.min(k + 1999, #pairs)))
  end
end

-- Add this call's outcomes to the lifetime counters and to a 10 s bucket (kept 2 minutes),
-- from which `aqueue status` reads jobs/s over the last minute.
local function flush_tally(prefix, now)
  local bucket = prefix .. 'rate:' .. math.floor(now / 10000)
  local any = false
  for status, n in pairs(tally) do
    redis.call('HINCRBY', prefix .. 'stats', status, n)
    redis.call('HINCRBY', bucket, status, n)
    any = true
  end
  if any then
    redis.call('PEXPIRE', bucket, 130000)
  end
  tally = {}
end

-- Append to a job's callback log (a list beside its record, expiring with it).
local function callback_log(prefix, jk, id, now, entry)
  local log = prefix .. 'cblog:' .. id
  redis.call('RPUSH', log, now .. ' ' .. entry)
  local ttl = redis.call('PTTL', jk)
  if ttl > 0 then redis.call('PEXPIRE', log, ttl) end
end

-- Can a worker with listeners `have` (a set) run jobs of lane `sig`? A job naming no listener
-- runs on any worker that has one.
local function fits(have, any, sig)
  if not any then return false end
  for name in string.gmatch(sig, '[^,]+') do
    if not have[name] then return false end
  end
  return true
end

-- The fence: a worker's write counts only while its attempt is the current, active one.
local function holds_lease(jk, attempt, worker)
  local f = redis.call('HMGET', jk, 'status', 'attempt', 'worker')
  return f[1] == 'active' and f[2] == attempt and f[3] == worker
end
