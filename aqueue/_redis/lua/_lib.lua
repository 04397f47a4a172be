-- Shared helpers, prepended to every script by aqueue/_scripts.py (EVAL scripts cannot share).
-- Keys are built from the queue's prefix `aq:{<queue>}:`; its hash tag keeps them in one slot.
-- Times are milliseconds on Redis's own clock, so clocks of clients and workers never matter.

-- A number handed to redis.call or joined to a string becomes text by "%.14g", a slow path
-- of printf (a tenth of Redis's time in a drain, and of every call's own cost): hot paths
-- pass integers as text, formatted once with "%d", and constants as literals ('0').
local function int(n) -- inline
  return string.format('%d', n)
end

-- HINCRBY that a counter overwritten with text (or past 64 bits) cannot fail, as a script's
-- error would leave its earlier writes standing: such a counter starts again from `by` (and
-- in a key that is no hash at all, planted, the count is lost, not the script).
local function incr(key, field, by)
  local n = redis.pcall('HINCRBY', key, field, by)
  if type(n) == 'table' then
    redis.pcall('HSET', key, field, by)
    return tonumber(by)
  end
  return n
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The wire formats: fields joined by '|' or ',' in one Redis value, each an encode/decode pair
-- here (a paragraph each, so that a script carries only the half it uses) and a class in
-- aqueue/_redis/wire.py: tests/integration/test_data_model.py round-trips them through both.
-- Numbers go in as text (int(n)); a decoder answers nil for what it cannot read; the text
-- field, last in each, may hold '|' itself. An encoder is marked `-- inline`: its calls are
-- expanded in place, as a call per job costs more than its concatenation (macros.py).

-- A record's `posted` (wire.Posted), "ms|score|sig": when, and its lane and score there. One
-- field rather than three, since every field of a record costs Redis a scan and two writes, on
-- every post.
local function posted_entry(ms, score, sig) -- inline
  return ms .. '|' .. score .. '|' .. sig
end

-- lane_of: a record's lane and score, from its `posted`; nil when they cannot be read (see
-- bury).
local UNREADABLE_LANE = 'its lane cannot be read from its record (posted)'
local function lane_of(posted)
  local score, sig = string.match(posted or '', '^%d+|(%d+)|(.*)$')
  return sig, score
end

-- An attempt (wire.Run), "worker|attempt|started ms": a job's `running` entry while it runs,
-- which becomes its record's `ran` when the attempt ends.
local function run_entry(worker, attempt, started) -- inline
  return worker .. '|' .. attempt .. '|' .. started
end

-- run_parts: an attempt's worker and attempt number.
local function run_parts(v)
  return string.match(v, '^(.*)|(%d+)|%d+$')
end

-- The fence: a worker's write counts only while its attempt is the current, active one
-- (`run`: the job's `running` entry, or false).
local function holds(run, worker, attempt) -- inline
  return run and string.find(run, worker .. '|' .. attempt .. '|', 1, true) == 1
end

-- A job's `tries` entry (wire.Tries), "attempts|released" or "attempts|released|alone": how
-- often it was tried, how many of those do not count against its budget (handed back at
-- shutdown, or lost beside other jobs: see reap.lua), and whether its current attempt runs
-- alone (claim_alone.lua; any outcome writes the entry afresh).
local function tries_entry(attempts, released, alone)
  if alone then return attempts .. '|' .. released .. '|alone' end
  return attempts .. '|' .. released
end

-- tries_of: attempts, released (numbers), alone; an entry that cannot be read counts as none
-- (see bury).
local function tries_of(raw)
  local attempts, released = string.match(raw or '', '^(%d+)|(%d+)$')
  if attempts then return tonumber(attempts), tonumber(released), false end
  attempts, released = string.match(raw or '', '^(%d+)|(%d+)|alone$')
  if attempts then return tonumber(attempts), tonumber(released), true end
  return 0, 0, false
end

-- A waiting worker's `idle` entry (wire.Idle), "free places|lease ms|listener,names" (see
-- waiting_for).
local function idle_entry(free, lease, names) -- inline
  return free .. '|' .. lease .. '|' .. names
end

-- idle_of: free, lease (numbers) and names; nil when it cannot be read.
local function idle_of(raw)
  local free, lease, names = string.match(raw, '^(%d+)|(%d+)|(.*)$')
  if not free then return nil end
  return tonumber(free), tonumber(lease), names
end

-- Listener names joined by ',' (wire.Names): a lane's signature and a worker's kind are the
-- sorted set of them (kind_of: that, and the set); a heartbeat's and a waiting worker's too.
local function kind_of(names)
  local have, sorted = {}, {}
  for _, name in ipairs(names) do
    if not have[name] then
      have[name] = true
      sorted[#sorted + 1] = name
    end
  end
  table.sort(sorted)
  return table.concat(sorted, ','), have
end

-- names_in: the set of the names joined in `joined`.
local function names_in(joined)
  local have = {}
  for name in string.gmatch(joined, '[^,]+') do have[name] = true end
  return have
end

-- A member of `expiries` (wire.ExpiryGroup): the ids of the records that go at one time, from
-- one call, joined by ',' (ids are hex).
local function expiry_group(ids) -- inline
  return table.concat(ids, ',')
end

-- expiry_group_ids: a group's ids.
local function expiry_group_ids(group)
  local ids = {}
  for id in string.gmatch(group, '[^,]+') do ids[#ids + 1] = id end
  return ids
end

-- `result` (a complete job's, when small) rides along, saving its waiter a read.
local function publish_status(prefix, id, status, result)
  redis.call('PUBLISH', events_key(prefix), cmsgpack.pack({id, 'status', status, result}))
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

-- A command on a queue-wide key (lanes, suspects, tries, running, active, scheduled, idle,
-- kinds, unserved, ...). A key of another type sitting there (a hostile or corrupt write:
-- nothing of ours is in it) is deleted, as absent: its error would fail the script after its
-- first writes (Redis rolls none back), and every script after it. Other errors stand.
local function keyed_call(cmd, key, ...)
  local reply = redis.pcall(cmd, key, ...)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then redis.call('DEL', key) end
    return redis.call(cmd, key, ...)
  end
  return reply
end

-- Lanes are indexed by what can serve them, so that a claim's cost does not grow with lanes
-- its worker cannot serve (junk listener names, say). A worker's kind is the set of its
-- listeners: names sorted, joined by ','. `kinds` (zset) holds the kinds of live workers, by
-- the latest liveness deadline of one (ms); `serves:<kind>` (set: its index; a sha1hex of
-- the kind in its key cost a claim 4% more) the signatures of the lanes with ready jobs that
-- kind can serve (and some emptied since: see claim.lua).
-- `unserved` (zset) holds the lanes no live kind can serve: with ready jobs (score +inf), or
-- kept for scheduled ones (score: when the latest is due); posts refuse to add one past the
-- queue's bound (post.lua). `lanes` still lists every lane with ready jobs (and some emptied
-- since); each lane it lists is in the index of a live kind that can serve it, or unserved.
-- Can a live worker serve lane `sig`? With `list` (the lane has just got ready jobs: it was
-- not in `lanes`), it is listed in the index of each kind that can, else as unserved.
local function lane_served(prefix, sig, list)
  local served = false
  for _, kind in ipairs(keyed_call('ZRANGE', kinds_key(prefix), '0', '-1')) do
    if fits(names_in(kind), true, sig) then
      if not list then return true end
      local added = redis.pcall('SADD', serving_key(prefix, kind), sig)
      if type(added) == 'table' and added.err then -- not an index: unlist the kind, which
        redis.call('DEL', serving_key(prefix, kind)) -- lists itself anew, index and all,
        keyed_call('ZREM', kinds_key(prefix), kind) -- at its next beat or claim
      end
      served = true
    end
  end
  if list and not served then keyed_call('ZADD', unserved_key(prefix), '+inf', sig) end
  return served
end

-- Put a job id on its lane (the caller records its status).
local function onto_lane(prefix, sig, score, id)
  keyed_call('ZADD', lane_key(prefix, sig), score, id)
  if keyed_call('SADD', lanes_key(prefix), sig) == 1 then lane_served(prefix, sig, true) end
end

-- A lane left with no ready jobs, off `lanes` (and off `unserved`, unless kept there for
-- scheduled jobs). Kinds' indexes may still list it: their claims drop it.
local function unlist_lane(prefix, sig)
  keyed_call('SREM', lanes_key(prefix), sig)
  if keyed_call('ZSCORE', unserved_key(prefix), sig) == 'inf' then
    keyed_call('ZREM', unserved_key(prefix), sig)
  end
end

-- A suspect (a job whose lease lapsed: see reap.lua) waits apart from the lanes, on a suspect
-- lane of its signature, until a worker with nothing else in flight takes it alone
-- (claim_alone.lua): should it kill that worker too, the blame is clear.
local function onto_suspects(prefix, sig, score, id)
  keyed_call('ZADD', suspect_lane_key(prefix, sig), score, id)
  keyed_call('SADD', suspects_key(prefix), sig)
end

-- Take a queued job off its lane or its suspect lane.
local function off_lanes(prefix, sig, id)
  local lane = lane_key(prefix, sig)
  if keyed_call('ZREM', lane, id) == 1 and redis.call('ZCARD', lane) == 0 then
    unlist_lane(prefix, sig)
  end
  local suspects = suspect_lane_key(prefix, sig)
  if keyed_call('ZREM', suspects, id) == 1 and redis.call('ZCARD', suspects) == 0 then
    keyed_call('SREM', suspects_key(prefix), sig)
  end
end

-- Put a job (already out of every other list) on its lane as `queued`.
local function enqueue(prefix, jk, id, sig, score)
  onto_lane(prefix, sig, score, id)
  redis.call('HSET', jk, 'status', 'queued')
end

-- Has a job used up its retry budget with this attempt? (Releases at shutdown, and attempts
-- lost beside other jobs, are not counted against it.)
local function budget_spent(attempt, released, max_att)
  return tonumber(attempt) - tonumber(released or 0) >= tonumber(max_att)
end

-- `cmd` (HMGET, SMISMEMBER) of `ids` in `key`, or {} (all missing) when there is no `key`:
-- `tries` and `watched` are empty in most batches, and one EXISTS costs less than a lookup
-- of every id.
-- A key of another type (planted) reads as absent too: its error would fail the script after
-- its first writes.
local function each_in(cmd, key, ids)
  if redis.call('EXISTS', key) == 0 then return {} end
  local found = redis.pcall(cmd, key, unpack(ids))
  if found.err then return {} end
  return found
end

-- One command over many arguments (members, or score/field and member/value pairs: the
-- chunks are even), in chunks that stay within Lua's unpack limit.
local function call_many(cmd, key, args)
  for k = 1, #args, 4000 do
    keyed_call(cmd, key, unpack(args, k, math.min(k + 3999, #args)))
  end
end

-- A worker of `kind` (its listeners: `have`, a set) is live until `deadline` (ms, as text).
-- A kind not listed before gets its index: every lane with ready jobs it can serve, which
-- is then no longer unserved. Returns the index's key.
local function serve_kind(prefix, kind, have, deadline)
  local key = serving_key(prefix, kind)
  if keyed_call('ZADD', kinds_key(prefix), 'GT', deadline, kind) == 1 then
    redis.call('DEL', key) -- what an unlisted kind's index holds is stale
    local fitting = {}
    for _, sig in ipairs(keyed_call('SMEMBERS', lanes_key(prefix))) do
      if fits(have, true, sig) then fitting[#fitting + 1] = sig end
    end
    if #fitting > 0 then
      call_many('SADD', key, fitting)
      keyed_call('ZCARD', unserved_key(prefix)) -- (deleted if it is no zset)
      call_many('ZREM', unserved_key(prefix), fitting)
    end
  end
  return key
end

-- Kinds whose workers are all gone: their indexes go, and the lanes with ready jobs that no
-- live kind serves become unserved (empty ones are no longer listed). Then lanes kept for
-- scheduled jobs now due: kept on as lanes with ready jobs, or let go of (`limit` of them).
local function tend_kinds(prefix, now, limit)
  local lapsed = keyed_call('ZRANGEBYSCORE', kinds_key(prefix), '-inf', '(' .. int(now))
  if #lapsed > 0 then
    keyed_call('ZREM', kinds_key(prefix), unpack(lapsed))
    local orphans = {}
    for _, kind in ipairs(lapsed) do
      local key = serving_key(prefix, kind)
      local listed = redis.pcall('SMEMBERS', key)
      for _, sig in ipairs(listed.err and {} or listed) do orphans[sig] = true end
      redis.call('DEL', key)
    end
    for sig in pairs(orphans) do
      if not lane_served(prefix, sig) then
        if redis.call('EXISTS', lane_key(prefix, sig)) == 1 then
          keyed_call('ZADD', unserved_key(prefix), '+inf', sig)
        else
          keyed_call('SREM', lanes_key(prefix), sig)
        end
      end
    end
  end
  local kept = keyed_call('ZRANGEBYSCORE', unserved_key(prefix), '-inf', '(' .. int(now),
    'LIMIT', '0', int(limit))
  for _, sig in ipairs(kept) do
    if redis.call('EXISTS', lane_key(prefix, sig)) == 1 then
      keyed_call('ZADD', unserved_key(prefix), '+inf', sig)
    else
      keyed_call('ZREM', unserved_key(prefix), sig)
    end
  end
end

-- When a finished job's record goes: its group's score in `expiries` (see finish_terminal).
local function expiry_of(finished, ttl_s)
  return int(tonumber(finished) + tonumber(ttl_s) * 1000)
end

-- Terminal outcomes of this call, counted once at its end by flush_tally, which runs after
-- every script that can record one (aqueue/_redis/scripts.py appends the call): so no script
-- can forget it.
local tally = {}
local tally_prefix, tally_now, tally_watched = nil, nil, false -- for flush_tally
-- Jobs that ended in this call, and the expiry of their records: let go of in one step each
-- by flush_tally (their running, tries and watched entries; a ZADD to `expiries`).
-- `expiries` holds groups, not jobs: one member per call and expiry time, the ids of the
-- records that go then, joined by ',' (ids are hex): wire.py's expiry group. One entry per
-- job cost a zset insert and a delete each.
-- requeue.lua takes a revived job out of its group.
local ended, expiring = {}, {} -- expiring: when (ms, text) -> {id, ...}, this call's groups

-- Record a terminal status, with the record's other new facts (`...`, field/value pairs) in
-- the same write: expiry (dead letters are kept until purged), the callback outbox (written
-- in this same atomic step, so no outcome is ever called back twice or never), and an event
-- when `watched` (a client awaits the job: see watch.lua; nobody else needs it), carrying
-- `result` (nil: none) with it. Records expire by the reaper's sweep of `expiries`, not by
-- EXPIRE: that is one command per job fewer on the hot path. No table is made per job.
local expires_at = {} -- ttl -> when, as text: formatted once per call, not per job
local function finish_terminal(prefix, jk, id, status, now, ttl_s, calls_back, watched, result,
                               ...)
  calls_back = calls_back and status ~= 'cancelled'
  if calls_back then
    redis.call('HSET', jk, 'status', status, 'finished', now, 'cb_state', 'pending', ...)
  else
    redis.call('HSET', jk, 'status', status, 'finished', now, ...)
  end
  if status == 'dead' then
    keyed_call('ZADD', dead_key(prefix), now, id)
  else
    local at = expires_at[ttl_s]
    if not at then
      at = expiry_of(now, ttl_s)
      expires_at[ttl_s] = at
    end
    local group = expiring[at]
    if not group then
      group = {}
      expiring[at] = group
    end
    group[#group + 1] = id
  end
  ended[#ended + 1] = id
  if calls_back then
    keyed_call('RPUSH', outbox_key(prefix), id)
    redis.call('PUBLISH', callbacks_key(prefix), id)
  end
  tally[status] = (tally[status] or 0) + 1
  tally_prefix, tally_now = prefix, now
  if watched then
    tally_watched = true
    publish_status(prefix, id, status, result)
  end
end

-- A large result's chunks, uploaded beside its job (aqueue/_results.py) as `upload:<id>:<token>`,
-- become the job's `blob:<id>` as it completes: kept an hour past its record, which deletes them
-- with it (forget). An upload that is gone (expired, purged) leaves a record whose readers say so.
local function adopt_chunks(prefix, id, token, ttl_s)
  if not token then return end
  local upload = upload_key(prefix, id, token)
  if redis.call('EXISTS', upload) == 0 then return end
  local blob = blob_key(prefix, id)
  redis.call('RENAME', upload, blob)
  redis.call('PEXPIRE', blob, int((tonumber(ttl_s) + 3600) * 1000))
end

-- Bad data costs only itself (DESIGN.md decision 13). Redis never rolls a script back: one that
-- fails half-way leaves its writes so far. So no reader of a stored entry here fails on one
-- it cannot read (an older build's, a hostile client's): it reads as absent, or as poison
-- for its job alone, which is buried: dead, with `reason` naming what could not be read, kept
-- for a person to look at, and called back if its record has a callback. `...`: more facts.
-- reap.lua reports them (`buried`).
local buried = {} -- this call's: {id, reason, ...}
local function bury(prefix, id, now, reason, ...)
  local jk = job_key(prefix, id)
  local calls_back = redis.call('HEXISTS', jk, 'cb') == 1
  finish_terminal(prefix, jk, id, 'dead', now, 1, calls_back, true, nil, 'reason', reason, ...)
  buried[#buried + 1] = id
  buried[#buried + 1] = reason
end

-- Move scheduled jobs that are due onto their lanes. Returns how many moved. One whose lane
-- or status cannot be read goes to `unreadable(prefix, id, now, why)` (reap.lua: bury, then
-- flush_tally) or, with none (claim.lua: it pays for no burial helpers), stays due, for the
-- reaper.
local function promote_due(prefix, now, limit, unreadable)
  local due = keyed_call('ZRANGEBYSCORE', scheduled_key(prefix), '-inf', int(now), 'LIMIT', '0',
    int(limit))
  local left = nil -- {due, id, ...}: put back
  for _, id in ipairs(due) do
    local jk = job_key(prefix, id)
    local f = redis.call('HMGET', jk, 'status', 'posted')
    local status, why = f[1], nil -- another known status: the entry is stale, let go of
    if status == 'scheduled' then
      local sig, score = lane_of(f[2])
      if sig then
        enqueue(prefix, jk, id, sig, score)
        publish_status(prefix, id, 'queued')
      else
        why = UNREADABLE_LANE
      end
    elseif status and status ~= 'queued' and status ~= 'complete' and status ~= 'failed'
        and status ~= 'dead' and status ~= 'cancelled' then
      why = 'its record has a status this build does not know'
    end
    if why and unreadable then
      unreadable(prefix, id, now, why)
    elseif why then
      left = left or {}
      left[#left + 1] = int(now)
      left[#left + 1] = id
    end
  end
  if #due > 0 then
    keyed_call('ZREM', scheduled_key(prefix), unpack(due))
    if left then keyed_call('ZADD', scheduled_key(prefix), unpack(left)) end
    redis.call('PUBLISH', wake_key(prefix), 'promoted')
  end
  return #due
end

-- Let go of the jobs that ended in this call, and add its outcomes to the lifetime counters
-- and to a 10 s bucket (kept 2 minutes), from which `aqueue status` reads jobs/s over the last
-- minute. (The SREM from `watched` only if one of them was watched.)
local function flush_tally()
  if #ended == 0 then return end
  local prefix, now = tally_prefix, tally_now
  call_many('HDEL', running_key(prefix), ended)
  if keyed_call('EXISTS', tries_key(prefix)) == 1 then
    call_many('HDEL', tries_key(prefix), ended)
  end
  if tally_watched then call_many('SREM', watched_key(prefix), ended) end
  for at, group in pairs(expiring) do
    keyed_call('ZADD', expiries_key(prefix), at, expiry_group(group))
  end
  ended, expiring, tally_watched = {}, {}, false
  local bucket = rate_key(prefix, int(math.floor(now / 10000)))
  local new_bucket = false
  for status, n in pairs(tally) do
    local count = int(n)
    incr(stats_key(prefix), status, count)
    -- a status's first count in this bucket: the bucket may be new, and needs its expiry
    if incr(bucket, status, count) == n then new_bucket = true end
  end
  if new_bucket then
    redis.call('PEXPIRE', bucket, '130000')
  end
  tally = {}
end

-- Append to a job's callback log (a list beside its record, deleted with it).
local function callback_log(prefix, id, now, entry)
  redis.call('RPUSH', callback_log_key(prefix, id), now .. ' ' .. entry)
end

-- Take a finished job out of its group in `expiries` (see finish_terminal): the group of
-- its call whose records go at the same time as its own, found by that time.
local function out_of_expiries(prefix, id, finished, ttl_s)
  local key = expiries_key(prefix)
  if not tonumber(finished) then return end
  local at = expiry_of(finished, ttl_s)
  local needle = ',' .. id .. ','
  for _, group in ipairs(redis.call('ZRANGEBYSCORE', key, at, at)) do
    local padded = ',' .. group .. ','
    local from, to = string.find(padded, needle, 1, true)
    if from then
      redis.call('ZREM', key, group)
      local rest = string.sub(padded, 1, from) .. string.sub(padded, to + 1)
      if #rest > 1 then redis.call('ZADD', key, at, string.sub(rest, 2, -2)) end
      return
    end
  end
end

-- Delete what a job leaves behind: its record, callback log, large result and spec. `ids`: up
-- to 1000.
local function forget(prefix, ids)
  local keys = {}
  for _, id in ipairs(ids) do
    keys[#keys + 1] = job_key(prefix, id)
    keys[#keys + 1] = callback_log_key(prefix, id)
    keys[#keys + 1] = blob_key(prefix, id)
  end
  redis.call('UNLINK', unpack(keys))
  redis.call('HDEL', spec_key(prefix), unpack(ids))
end

-- Who runs a job: {worker, attempt, its `running` entry "worker|attempt|started ms"}, or
-- nil when it is not active. An active job's record still says the status it had before
-- (queued): a claim writes only this queue-wide hash, in one command for its whole batch.
-- When the attempt ends the entry becomes the record's `ran`.
local function runner(prefix, id)
  local v = keyed_call('HGET', running_key(prefix), id)
  if not v then return nil end
  local worker, attempt = run_parts(v)
  return {worker, attempt, v}
end

-- A job's spec (see aqueue/_records.py SpecShape): {msg, fns, timeout, max_att, retry, ttl,
-- callback}; or nil and why not (none, or one that cannot be read: see bury). Only the cold
-- paths unpack it; claims hand it over as it is (and the worker checks it: _store.py).
-- Fields past the seventh (a newer build's) are let be: these scripts need none of them.
local function spec_of(prefix, id)
  local raw = redis.call('HGET', spec_key(prefix), id)
  if not raw then return nil, 'its spec is missing' end
  local ok, spec = pcall(cmsgpack.unpack, raw)
  if not ok or type(spec) ~= 'table' or type(spec[4]) ~= 'number' or type(spec[6]) ~= 'number'
      or type(spec[7]) ~= 'string' then
    return nil, 'its spec cannot be read (not a msgpack array with max_att, ttl, callback)'
  end
  return spec
end

-- The status a job has: `stored` (its record's), unless it is running.
local function live_status(prefix, id, stored)
  if stored and keyed_call('HEXISTS', running_key(prefix), id) == 1 then return 'active' end
  return stored
end

-- An attempt that did not end the job (retry, hand-back, lapsed lease): the job waits again,
-- its tries counted in `tries` for its next claim, its `running` entry let go of.
local function back_in_line(prefix, id, attempt, released)
  keyed_call('HSET', tries_key(prefix), id, tries_entry(attempt, int(released)))
  keyed_call('HDEL', running_key(prefix), id)
end

-- Redis keeps a hash or zset of up to 128 short entries as one packed list (a listpack),
-- where every lookup, insert and delete scans the list: at the 50-130 jobs a busy queue holds,
-- that cost a claim and a finish more than all else they do. An entry longer than 64 bytes
-- turns the key into a hashtable or skiplist for good, so `running` and `active` each keep
-- one such placeholder: never a job id, and in `active` at +inf, where no lease ever lapses.
-- `spec` gets one at a queue's first post (post.lua). The text is stored in Redis: it
-- stays as it is (its path is where this file was once), so existing queues still match it.
local PLACEHOLDER = 'not a job: keeps this key a hashtable or skiplist (see aqueue/lua/_lib.lua)'

-- A claim: jobs leased to `worker` until `deadline` (ms, text), gathered by grant and written
-- by lease_jobs. claim.lua, claim_alone.lua, and post.lua for a waiting worker (push_to) all
-- claim through these. `rows` (appended to, after its first `at` values) are what the worker
-- is handed, 4 values a job: id, attempt, released, spec (store.py claimed_rows).
local function new_claim(worker, deadline, rows, at)
  return {worker = worker, deadline = deadline, runs = {}, leases = {}, n = 0, rows = rows,
          at = at}
end
-- `run`: its running entry (run_entry(worker, attempt, now)).
local function grant(c, id, attempt, released, spec, run)
  local n, at, rows = c.n + 2, c.at, c.rows -- counters, not #t: a length is a search
  c.runs[n - 1], c.runs[n] = id, run
  c.leases[n - 1], c.leases[n] = c.deadline, id
  rows[at + 1], rows[at + 2], rows[at + 3], rows[at + 4] = id, attempt, released, spec
  c.n, c.at = n, at + 4
end
-- The leases go into the queue-wide `running` hash and `active` zset, one command each for
-- the whole claim. They add to what the worker holds, `held:<worker>` (set afresh by its
-- heartbeat): when one of its leases lapses, reap.lua reads there whether it held others.
local function lease_jobs(prefix, c)
  local runs, leases, n = c.runs, c.leases, c.n
  -- pcall: a count that is not one (planted) must not fail a claim after its first write;
  -- unreadable, reap.lua takes it as "several"
  redis.pcall('INCRBY', held_key(prefix, c.worker), int(n / 2))
  runs[n + 1], runs[n + 2] = PLACEHOLDER, '-'
  leases[n + 1], leases[n + 2] = '+inf', PLACEHOLDER
  call_many('HSET', running_key(prefix), runs)
  call_many('ZADD', active_key(prefix), leases)
end

-- Pushes to waiting workers, the Lua side of the protocol (the worker's side: Store.stop_waiting
-- and the worker's wake loop). A claim short of jobs leaves its worker waiting in `idle` with
-- its free places (claim.lua's last step: an idle_entry); a post then claims its ready jobs
-- for such workers, as a claim would (attempt 1), and publishes them on each one's
-- `push:<worker>` channel (waiting_for, push_taker, push_to): the worker starts them without a
-- claim round trip. A worker leaves `idle` at its next claim (claim.lua, claim_alone.lua), at
-- its stop (Store.stop_waiting, whose empty message ends its pushes), when a post fills its
-- places or finds it gone (push_to), and when its liveness lapses (reap.lua).

-- The waiting workers that can run lane `sig`, each with the claim a post gathers for it. An
-- entry that cannot be read is no waiting worker.
local function waiting_for(prefix, sig, now)
  local waiting = {}
  local registered = keyed_call('HGETALL', idle_key(prefix))
  for k = 1, #registered, 2 do
    local id, free, lease, names = registered[k], idle_of(registered[k + 1])
    if free and fits(names_in(names), true, sig) then
      waiting[#waiting + 1] = {id = id, free = free, lease = lease, names = names,
        claim = new_claim(id, int(now + lease), {}, 0), run = run_entry(id, '1', int(now)),
        jobs = {}, bytes = 0}
    end
  end
  return waiting
end
-- The waiting worker to push a job of `spec` to, claimed for it at once; or nil. Big messages
-- are not pushed: a subscriber's output buffer has a hard limit (32 MB by default) past
-- which Redis drops the connection, and the pushed jobs with it.
local PUSH_MAX_BYTES = 65536
local function push_taker(waiting, id, score, spec)
  if #spec > PUSH_MAX_BYTES then return nil end
  for _, w in ipairs(waiting) do
    if w.free > 0 and w.bytes + #spec <= 16 * PUSH_MAX_BYTES then
      w.bytes = w.bytes + #spec
      w.free = w.free - 1
      grant(w.claim, id, '1', 0, spec, w.run)
      w.jobs[#w.jobs + 1] = {score, id}
      return w
    end
  end
  return nil
end
-- Send a waiting worker the jobs claimed for it. PUBLISH says how many received them: none
-- means the worker is gone (killed, or its subscription dropped); then its jobs are added to
-- `lane` ({score, id, ...}) as if it had never waited.
local function push_to(prefix, w, lane)
  if #w.jobs == 0 then return end
  if redis.call('PUBLISH', push_key(prefix, w.id), cmsgpack.pack(w.claim.rows)) > 0 then
    lease_jobs(prefix, w.claim)
    if w.free > 0 then
      keyed_call('HSET', idle_key(prefix), w.id, idle_entry(int(w.free), int(w.lease), w.names))
    else
      keyed_call('HDEL', idle_key(prefix), w.id)
    end
  else
    keyed_call('HDEL', idle_key(prefix), w.id)
    for _, pair in ipairs(w.jobs) do
      lane[#lane + 1] = pair[1]
      lane[#lane + 1] = pair[2]
    end
  end
end

local function holds_lease(prefix, id, attempt, worker)
  return holds(keyed_call('HGET', running_key(prefix), id), worker, attempt)
end
