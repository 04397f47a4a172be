-- post: enqueue a batch of new jobs (event: post).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
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
-- A lane no live worker can serve (unknown listener names: a typo, or junk) is one more only
-- within the queue's bound, checked before any write. A lane that has ready jobs is counted.
local listed = keyed_call('SISMEMBER', lanes_key(prefix), sig) == 1
if not listed and not lane_served(prefix, sig)
    and not keyed_call('ZSCORE', unserved_key(prefix), sig)
    and keyed_call('ZCARD', unserved_key(prefix)) >= tonumber(ARGV[4]) then
  return tonumber(ARGV[4])
end
-- Ids are fresh random ones, made for this call, and a batch is written whole or not at all.
-- So if its first job without a key exists, this is the same call sent again (a retry after
-- a lost reply): answer as the first time did and write nothing. (Keyed jobs dedupe by key.)
-- That job's spec, written first, is the test: a job's spec lives exactly as long as its record.
local first = nil
for j = 1, n do
  if batch[5 + 3 * j] == '' then -- job j: id, key, spec at batch[4 + 3 * j] on
    if redis.call('HSETNX', spec_key(prefix), batch[4 + 3 * j], batch[6 + 3 * j]) == 0 then
      local ids = {}
      for k = 1, n do
        local key = batch[5 + 3 * k]
        ids[k] = (key ~= '' and redis.call('GET', idempotency_key(prefix, key)))
          or batch[4 + 3 * k]
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
local seq = redis.pcall('INCRBY', seq_key(prefix), n)
if type(seq) == 'table' then
  seq = now + n
  redis.call('SET', seq_key(prefix), int(seq))
end
seq = seq - n
local band = (100 - prio) * 17592186044416 + seq -- priority band (2^44: PRIORITY_BAND), then FIFO
local due = 0
if at > 0 then due = at elseif delay > 0 then due = now + delay end
local status = 'queued' -- and active, if handed to a worker (its `running` entry)
if due > now then
  status = 'scheduled'
  common[#common + 1] = 'due'
  common[#common + 1] = int(due)
end
local ids = {}
local lane = {} -- {score, id, ...}
local later = {} -- {due, id, ...}

-- Workers that wait for work are handed ready jobs directly (see waiting_for in _lib.lua).
local idle = status == 'queued' and waiting_for(prefix, sig, now) or {}
local specs, watched = {}, {}
if seq == 0 then -- a new queue: the placeholder (see lease_jobs) keeps `spec` a hashtable for
  -- good, where a listpack of up to 128 specs would be scanned on every post, claim and expiry
  specs = {PLACEHOLDER, '-'}
end
for j = 1, n do
  local id, key, spec = batch[4 + 3 * j], batch[5 + 3 * j], batch[6 + 3 * j] -- no calls
  local existing = nil
  if key ~= '' then
    local kk = idempotency_key(prefix, key)
    existing = redis.call('GET', kk)
    if existing and redis.call('EXISTS', job_key(prefix, existing)) == 0 then
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
      if not (#idle > 0 and push_taker(idle, id, score, spec)) then
        local at = #lane
        lane[at + 1], lane[at + 2] = score, id
      end
    end
    -- attempt, released: absent reads as 0 (one field fewer each, on every queued job)
    local jk = job_key(prefix, id)
    local posted = posted_entry(now_s, score, sig)
    if key ~= '' then
      redis.call('HSET', jk, 'status', status, 'posted', posted, 'key', key, unpack(common))
    else
      redis.call('HSET', jk, 'status', status, 'posted', posted, unpack(common))
    end
  end
end
call_many('HSET', spec_key(prefix), specs)
if #watched > 0 then call_many('SADD', watched_key(prefix), watched) end
for _, w in ipairs(idle) do push_to(prefix, w, lane) end
if #lane > 0 then
  call_many('ZADD', lane_key(prefix, sig), lane)
  if not listed then -- (the SISMEMBER above saves the SADD that a listed lane needs not)
    keyed_call('SADD', lanes_key(prefix), sig)
    lane_served(prefix, sig, true)
  end
end
if #later > 0 then
  call_many('ZADD', scheduled_key(prefix), later)
  if not lane_served(prefix, sig) then -- counted until due (see tend_kinds)
    keyed_call('ZADD', unserved_key(prefix), 'GT', int(due), sig)
  end
end
if #lane > 0 then
  redis.call('PUBLISH', wake_key(prefix), 'posted')
end
return ids
