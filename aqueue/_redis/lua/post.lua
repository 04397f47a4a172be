-- post: enqueue a batch of new jobs (event: post).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix `aq:{q}:`
-- ARGV[2]  idempotency key lifetime, ms
-- ARGV[3]  the batch, msgpack: [lane signature, priority (-100..100), delay ms (0 = none),
--          at (epoch ms, 0 = none), watched (0|1), [field, value, ...] (every record's),
--          then per job: id, key ('' = none), spec (what a worker needs to run it, see
--          aqueue/_records.py SpecShape)]. One packed argument rather than thousands, and
--          what the jobs share sent once: far cheaper to send and to parse.
-- ARGV[4]  the most lanes no live worker can serve (see lane_served in _lib.lua) the queue
--          may have: a post that would add one more is refused
-- Returns: the n job ids in order; where a key or the id was already taken, the existing id.
--          Or, refused (nothing written): ARGV[4], an integer.
-- Transitions: (none) -> queued | scheduled | active (handed to a waiting worker).
local prefix = ARGV[1]
local key_ttl = ARGV[2]
local batch = cmsgpack.unpack(ARGV[3])
local sig, prio, delay, at, watched_all, common = unpack(batch, 1, 6)
local n = (#batch - 6) / 3
local function job_id(j) return batch[4 + 3 * j] end
local function job_key(j) return batch[5 + 3 * j] end
local function job_spec(j) return batch[6 + 3 * j] end
-- A lane no live worker can serve (unknown listener names: a typo, or junk) is one more only
-- within the queue's bound, checked before any write. A lane that has ready jobs is counted.
local listed = keyed_call('SISMEMBER', prefix .. 'lanes', sig) == 1
if not listed and not lane_served(prefix, sig)
    and not keyed_call('ZSCORE', prefix .. 'unserved', sig)
    and keyed_call('ZCARD', prefix .. 'unserved') >= tonumber(ARGV[4]) then
  return tonumber(ARGV[4])
end
-- Ids are fresh random ones, made for this call, and a batch is written whole or not at all.
-- So if its first job without a key exists, this is the same call sent again (a retry after
-- a lost reply): answer as the first time did and write nothing. (Keyed jobs dedupe by key.)
-- That job's spec, written first, is the test: a job's spec lives exactly as long as its record.
local first = nil
for j = 1, n do
  if job_key(j) == '' then
    if redis.call('HSETNX', prefix .. 'spec', job_id(j), job_spec(j)) == 0 then
      local ids = {}
      for k = 1, n do
        local key = job_key(k)
        ids[k] = (key ~= '' and redis.call('GET', prefix .. 'key:' .. key)) or job_id(k)
      end
      return ids
    end
    first = j
    break
  end
end
local now = now_ms()
local now_s = int(now)
-- `seq` counts every job ever posted to the queue: it is also the `posted` total. One that
-- is not a count (overwritten) starts again from now in ms, above any count a queue reaches,
-- so that new jobs still wait behind older ones: no post is refused (DESIGN.md decision 13).
local seq = redis.pcall('INCRBY', prefix .. 'seq', n)
if type(seq) == 'table' then
  seq = now + n
  redis.call('SET', prefix .. 'seq', int(seq))
end
seq = seq - n
local band = (100 - prio) * 17592186044416 + seq -- priority band (2^44: PRIORITY_BAND), then FIFO
local due = 0
if at > 0 then due = at elseif delay > 0 then due = now + delay end
local placed = now_s .. '|' -- `posted`: "ms|score|sig"
local status = 'queued' -- and active, if handed to a worker (its `running` entry)
if due > now then
  status = 'scheduled'
  common[#common + 1] = 'due'
  common[#common + 1] = int(due)
end
local ids = {}
local lane = {} -- {score, id, ...}
local later = {} -- {due, id, ...}

-- Workers that wait for work (claim.lua registered them, with their free places) are handed
-- ready jobs directly, leased to them as a claim would: they start without a claim round trip.
local idle = {}
if status == 'queued' then
  local registered = keyed_call('HGETALL', prefix .. 'idle')
  for k = 1, #registered, 2 do
    local free, lease, names = string.match(registered[k + 1], '^(%d+)|(%d+)|(.*)$')
    local have = {}
    for name in string.gmatch(names or '', '[^,]+') do have[name] = true end
    if free and fits(have, true, sig) then -- an entry that cannot be read: no waiting worker
      idle[#idle + 1] = {id = registered[k], free = tonumber(free), lease = tonumber(lease),
        deadline = int(now + tonumber(lease)), names = names, rows = {}, jobs = {},
        leases = {}, runs = {}, bytes = 0}
    end
  end
end
-- Big messages are not pushed: a subscriber's output buffer has a hard limit (32 MB by
-- default) past which Redis drops the connection, and the pushed jobs with it.
local PUSH_MAX_BYTES = 65536
local function taker(spec)
  if #spec > PUSH_MAX_BYTES then return nil end
  for _, w in ipairs(idle) do
    if w.free > 0 and w.bytes + #spec <= 16 * PUSH_MAX_BYTES then
      w.bytes = w.bytes + #spec
      return w
    end
  end
  return nil
end
local specs, watched = {}, {}
if seq == 0 then -- a new queue: the placeholder (see lease_jobs) keeps `spec` a hashtable for
  -- good, where a listpack of up to 128 specs would be scanned on every post, claim and expiry
  specs = {PLACEHOLDER, '-'}
end
for j = 1, n do
  local id, key, spec = batch[4 + 3 * j], batch[5 + 3 * j], batch[6 + 3 * j] -- no calls
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
    local score = int(band + j)
    if j ~= first then
      local at = #specs -- once per pair: a table's length is a search
      specs[at + 1], specs[at + 2] = id, spec
    end
    if watched_all == 1 then watched[#watched + 1] = id end
    if status == 'scheduled' then
      local at = #later
      later[at + 1], later[at + 2] = due, id
    else
      local w = #idle > 0 and taker(spec)
      if w then -- the claim's work, done here: active under w's lease, attempt 1
        w.free = w.free - 1
        for _, v in ipairs({id, '1', 0, spec}) do w.rows[#w.rows + 1] = v end
        w.jobs[#w.jobs + 1] = {score, id}
        w.leases[#w.leases + 1] = w.deadline
        w.leases[#w.leases + 1] = id
        w.runs[#w.runs + 1] = id
        w.runs[#w.runs + 1] = w.id .. '|1|' .. now_s
      else
        local at = #lane
        lane[at + 1], lane[at + 2] = score, id
      end
    end
    -- attempt, released: absent reads as 0 (one field fewer each, on every queued job)
    local jk = prefix .. 'job:' .. id
    local posted = placed .. score .. '|' .. sig
    if key ~= '' then
      redis.call('HSET', jk, 'status', status, 'posted', posted, 'key', key, unpack(common))
    else
      redis.call('HSET', jk, 'status', status, 'posted', posted, unpack(common))
    end
  end
end
call_many('HSET', prefix .. 'spec', specs)
if #watched > 0 then call_many('SADD', prefix .. 'watched', watched) end
for _, w in ipairs(idle) do
  if #w.jobs > 0 then
    -- PUBLISH says how many received it: none means the worker is gone (killed, or its
    -- subscription dropped); then its jobs go to their lanes as if it had never been idle
    if redis.call('PUBLISH', prefix .. 'push:' .. w.id, cmsgpack.pack(w.rows)) > 0 then
      lease_jobs(prefix, w.id, w.runs, w.leases)
      if w.free > 0 then
        keyed_call('HSET', prefix .. 'idle', w.id, w.free .. '|' .. w.lease .. '|' .. w.names)
      else
        keyed_call('HDEL', prefix .. 'idle', w.id)
      end
    else
      keyed_call('HDEL', prefix .. 'idle', w.id)
      for _, pair in ipairs(w.jobs) do
        lane[#lane + 1] = pair[1]
        lane[#lane + 1] = pair[2]
      end
    end
  end
end
if #lane > 0 then
  call_many('ZADD', prefix .. 'lane:' .. sig, lane)
  if not listed then -- (the SISMEMBER above saves the SADD that a listed lane needs not)
    keyed_call('SADD', prefix .. 'lanes', sig)
    lane_served(prefix, sig, true)
  end
end
if #later > 0 then
  call_many('ZADD', prefix .. 'scheduled', later)
  if not lane_served(prefix, sig) then -- counted until due (see tend_kinds)
    keyed_call('ZADD', prefix .. 'unserved', 'GT', int(due), sig)
  end
end
if #lane > 0 then
  redis.call('PUBLISH', prefix .. 'wake', 'posted')
end
return ids
