-- claim: take up to n ready jobs this worker can run, each under a lease (event: claim).
-- Due scheduled jobs are promoted first (event: promote).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  lease, ms
-- ARGV[4]  n, the most jobs to take
-- ARGV[5..] the worker's listener names; a job is taken only if they include all of its own.
--          A worker of a kind not yet in `kinds` (its first claim before a heartbeat) is
--          listed there, live for one lease.
-- Returns: {now ms, next due ms or -1, count, flags, then per job:
--           id, attempt, released, spec (msgpack: msg, fns, timeout ms, max_att, retry, ...)}
--          flags: 1 (full: took n, more may be ready) + 2 (suspects it can run wait: it is to
--          drain, then take them one at a time with claim_alone.lua)
-- A short claim (fewer than n) registers the worker in `idle` with its n - taken free places,
-- so that posts can hand it jobs directly (see waiting_for in _lib.lua), unless suspects
-- wait for it to drain; any claim first unregisters it.
-- Transitions: queued -> active (attempt + 1: an entry in `running`); scheduled -> queued.
local prefix, worker = ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local n = math.min(tonumber(ARGV[4]), 2000) -- two values each stay within unpack's limit
local now = now_ms()
local now_s, deadline = int(now), int(now + lease)
promote_due(prefix, now, 1000)

keyed_call('HDEL', idle_key(prefix), worker) -- claiming: no longer waiting for pushes

-- Only the lanes of this worker's kind are read (see lane_served in _lib.lua): a claim costs
-- the same however many lanes others, or no one, can serve.
local lanes, index, have = {}, nil, {}
if #ARGV >= 5 then
  local kind
  kind, have = kind_of({unpack(ARGV, 5)})
  index = serving_key(prefix, kind)
  local listed = redis.pcall('SMEMBERS', index)
  if listed.err then -- not an index (a hostile or corrupt write): the kind lists itself anew
    redis.call('DEL', index)
    keyed_call('ZREM', kinds_key(prefix), kind)
    listed = {}
  end
  if #listed == 0 then -- nothing to serve, or a kind not listed yet (before its first beat)
    serve_kind(prefix, kind, have, deadline)
    listed = redis.call('SMEMBERS', index)
  end
  for _, sig in ipairs(listed) do
    if fits(have, true, sig) then lanes[#lanes + 1] = sig end
  end
end

-- The picked jobs leave their lanes only once their leases are written (off_picked, below):
-- a command refused on the way (a key of the wrong type, planted) then fails the claim with
-- every job still on its lane, where a failed script would have left them in no list.
local picked, off_picked = {}, nil
if #lanes == 1 then
  -- not ZPOPMIN: it replies with the scores too, and formatting doubles costs Redis more
  -- than taking the jobs does
  local lane = lane_key(prefix, lanes[1])
  picked = redis.call('ZRANGE', lane, '0', int(n - 1))
  if #picked > 0 then
    off_picked = function() redis.call('ZREMRANGEBYRANK', lane, '0', int(#picked - 1)) end
  end
elseif #lanes > 1 then
  -- merge the heads of every lane that fits, best (priority, then age) first
  local heads = {}
  for _, sig in ipairs(lanes) do
    local top = redis.call('ZRANGE', lane_key(prefix, sig), '0', int(n - 1), 'WITHSCORES')
    for k = 1, #top, 2 do
      heads[#heads + 1] = {tonumber(top[k + 1]), top[k], sig}
    end
  end
  table.sort(heads, function(a, b) return a[1] < b[1] end)
  for k = 1, math.min(n, #heads) do picked[#picked + 1] = heads[k][2] end
  off_picked = function()
    for k = 1, #picked do redis.call('ZREM', lane_key(prefix, heads[k][3]), heads[k][2]) end
    -- A worker's only lane stays listed when it empties: the next post to it then has no
    -- lane to list again (SADDs to `lanes` and each kind's index). Among several, the empty
    -- ones go, so that a claim reads no more lanes than have jobs, and one.
    for _, sig in ipairs(lanes) do
      if redis.call('ZCARD', lane_key(prefix, sig)) == 0 then
        keyed_call('SREM', lanes_key(prefix), sig)
        redis.call('SREM', index, sig)
      end
    end
  end
end

-- Nothing is written per job: its spec and tries are read, and its lease goes into the
-- queue-wide `running` hash and `active` zset, one command each for the whole batch.
local out = {now, -1, 0, #picked == n and 1 or 0}
if #picked > 0 then
  local specs = redis.call('HMGET', spec_key(prefix), unpack(picked))
  local tried = each_in('HMGET', tries_key(prefix), picked)
  local awaited = each_in('SMISMEMBER', watched_key(prefix), picked)
  local claim = new_claim(worker, deadline, out, #out)
  local runs, leases = claim.runs, claim.leases
  local taken, o = 0, #out -- counters, not #t: a table's length is a search on every append
  local first = run_entry(worker, '1', now_s) -- the running entry of most: a first attempt
  local watched = {} -- awaited by a client (watch.lua): only their start is published
  for k, id in ipairs(picked) do
    if specs[k] then -- the job may have been purged while its id sat on a lane
      local attempt, run, released = '1', first, 0
      local tries = tried[k]
      if tries then
        local attempts
        attempts, released = tries_of(tries)
        attempt = int(attempts + 1)
        run = run_entry(worker, attempt, now_s)
      end
      -- grant(claim, id, attempt, released, specs[k], run), inlined: a call per job cost the
      -- run 1.5% more of Redis's instructions (benchmarks/redis_cost.py)
      taken = taken + 2
      runs[taken - 1], runs[taken] = id, run
      leases[taken - 1], leases[taken] = deadline, id
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, attempt, released, specs[k]
      o = o + 4
      if awaited[k] == 1 then watched[#watched + 1] = id end
    end
  end
  claim.n, claim.at = taken, o
  out[3] = taken / 2
  if claim.n > 0 then
    lease_jobs(prefix, claim)
    if #watched > 0 then -- one event for the whole batch: {'', 'active', {ids}}
      redis.call('PUBLISH', events_key(prefix), cmsgpack.pack({'', 'active', watched}))
    end
  end
end
if off_picked then off_picked() end
-- Suspects (reap.lua) run on a worker with nothing else in flight: one that can run them is
-- told to drain, and handed no posts meanwhile. As many workers drain as suspects wait, not
-- all (a drain lasts as long as the longest job in flight): the others serve on. A drainer
-- is in `draining` until claim_alone.lua finds no more suspects for it, or its liveness lapses.
-- This runs after the jobs were taken: an error here (a key of the wrong type, planted) would
-- leave them leased to a worker that never hears of them, so it is caught, and means "none".
local function drain_for_suspects()
  local waiting = 0
  for _, sig in ipairs(keyed_call('SMEMBERS', suspects_key(prefix))) do
    if fits(have, #ARGV >= 5, sig) then
      waiting = waiting + redis.call('ZCARD', suspect_lane_key(prefix, sig))
    end
  end
  local draining = draining_key(prefix)
  if waiting > 0 and redis.call('SISMEMBER', draining, worker) == 0 then
    for _, w in ipairs(redis.call('SMEMBERS', draining)) do
      local live = tonumber(keyed_call('ZSCORE', workers_key(prefix), w))
      if live and live >= now then waiting = waiting - 1 else keyed_call('SREM', draining, w) end
    end
    if waiting > 0 then keyed_call('SADD', draining, worker) end
  end
  return waiting > 0
end
local suspects = false
if keyed_call('EXISTS', suspects_key(prefix)) == 1 then
  local ok, wait = pcall(drain_for_suspects)
  suspects = ok and wait
  if suspects then out[4] = out[4] + 2 end
end
if #picked < n then -- short: the worker waits, until the next scheduled job at the latest
  local nxt = keyed_call('ZRANGE', scheduled_key(prefix), '0', '0', 'WITHSCORES')
  if nxt[2] then out[2] = tonumber(nxt[2]) end
  -- and while it waits, posts hand it new jobs directly (post.lua): no claim round trip
  if #ARGV >= 5 and not suspects then
    keyed_call('HSET', idle_key(prefix), worker,
      idle_entry(int(n - #picked), int(lease), table.concat(ARGV, ',', 5)))
  end
end
return out
