-- reap: reclaim jobs whose lease lapsed, promote due jobs, forget dead workers (and the kinds
-- of worker none is left of: see tend_kinds), and delete the records of finished jobs whose
-- time is up.
-- Safe with any number of reapers at once: each lapsed job is handled by exactly one call,
-- since the check and the move are one atomic step.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] the most jobs to handle in this call (at most 1000)
-- Returns: {requeued, dead, promoted, expired, {id, reason, ...}}: the last, the jobs buried
-- because what they need cannot be read (see bury in _lib.lua); they count as dead too.
-- Transitions: active -> queued (a suspect: see below) | dead (budget spent, or data
-- unreadable); scheduled -> queued (or dead: its lane unreadable).
-- A job whose lease lapsed may have killed its worker: it becomes a suspect, and waits apart
-- (onto_suspects) to run alone. Its lost attempt counts against its budget only where the
-- blame is clear: it ran alone (claim_alone.lua), or its worker held no other job. A worker
-- that died holding several was killed by any one of them, or by none (a prefetched one never
-- started): their attempts are not counted (as `released`, like a hand-back at shutdown; the
-- attempt, the fence token, still grows), and each runs alone before another lapse of it can
-- go uncounted. So a job that kills its workers ends dead after its budget (decision 4), at
-- most one lapse later than it would alone, and the jobs beside it do not.
-- What a worker held is in `held:<worker>`: its last heartbeat's count plus its claims since
-- (lease_jobs). Jobs that ended since are still in it, so it errs only towards "several":
-- that costs a job that kills its worker one more lapse, never an innocent an attempt.
local prefix, limit = ARGV[1], math.min(tonumber(ARGV[2]), 1000)
local now = now_ms()
local promoted = promote_due(prefix, now, limit, bury)
local lapsed = keyed_call('ZRANGEBYSCORE', active_key(prefix), '-inf', '(' .. now,
  'LIMIT', 0, limit)
local several = {} -- worker -> whether it held more than one job
local function held_several(worker)
  if several[worker] == nil then
    local raw = redis.pcall('GET', held_key(prefix, worker)) -- a planted non-string: unknown
    local n = type(raw) == 'string' and tonumber(raw) or nil
    several[worker] = not n or n > 1 -- not known: not blamed
  end
  return several[worker]
end
local requeued, dead = 0, #buried / 2 -- due jobs buried, not promoted
promoted = promoted - dead
for _, id in ipairs(lapsed) do
  local jk = job_key(prefix, id)
  local run = runner(prefix, id)
  local f = redis.call('HMGET', jk, 'posted', 'status')
  local sig, score = lane_of(f[1])
  local spec, unreadable = spec_of(prefix, id)
  if run and not run[2] then
    unreadable = 'its running entry cannot be read'
  elseif not sig then
    unreadable = UNREADABLE_LANE
  end
  if run and f[2] and (unreadable or not spec) then
    bury(prefix, id, now, 'lease lost; ' .. unreadable, 'ran', run[2] and run[3] or '')
    dead = dead + 1
  elseif run and f[2] then
    local worker, attempt = run[1], run[2]
    local _, released, alone = tries_of(keyed_call('HGET', tries_key(prefix), id))
    local beside = not alone and held_several(worker)
    local reason = 'lease lost on attempt ' .. attempt .. ' (worker ' .. worker .. ')'
    local facts = {'ran', run[3]}
    if beside then
      released = released + 1
      reason = reason .. ', which held other jobs: not counted against the retry budget'
    end
    if not beside and budget_spent(attempt, released, spec[4]) then
      for _, v in ipairs({'reason', reason .. '; retry budget spent', 'err_type', 'LeaseLost',
                          'err_msg', reason}) do
        facts[#facts + 1] = v
      end
      finish_terminal(prefix, jk, id, 'dead', now, spec[6], spec[7] ~= '', true, nil,
        unpack(facts))
      dead = dead + 1
    else
      for _, v in ipairs({'reason', reason .. '; it runs alone next', 'status', 'queued',
                          'released', int(released)}) do
        facts[#facts + 1] = v
      end
      redis.call('HSET', jk, unpack(facts)) -- one write of the record: facts and status
      back_in_line(prefix, id, attempt, released)
      onto_suspects(prefix, sig, score, id)
      publish_status(prefix, id, 'queued')
      requeued = requeued + 1
    end
  elseif run then -- its record was purged while it ran
    keyed_call('HDEL', running_key(prefix), id)
  end
end
if #lapsed > 0 then
  keyed_call('ZREM', active_key(prefix), unpack(lapsed))
end
if requeued > 0 then
  redis.call('PUBLISH', wake_key(prefix), 'reaped')
end
local gone = keyed_call('ZRANGEBYSCORE', workers_key(prefix), '-inf', '(' .. now)
if #gone > 0 then
  keyed_call('ZREM', workers_key(prefix), unpack(gone))
  keyed_call('HDEL', idle_key(prefix), unpack(gone)) -- hand them no more jobs
  redis.pcall('HDEL', done_key(prefix), unpack(gone)) -- their counts (a pcall: see finish)
end
tend_kinds(prefix, now, limit)
-- finished jobs past their time to live, a group at a time (see finish_terminal), until
-- `limit` jobs are gone. Groups are read a few at a time: one can hold a thousand ids.
local expired = 0
local key = expiries_key(prefix)
local more = true
while more and expired < limit do
  local groups = redis.call('ZRANGEBYSCORE', key, '-inf', int(now), 'LIMIT', '0', '16')
  more = #groups == 16
  local done_groups = {}
  for _, group in ipairs(groups) do
    local ids = expiry_group_ids(group)
    for k = 1, #ids, 1000 do forget(prefix, {unpack(ids, k, math.min(k + 999, #ids))}) end
    expired = expired + #ids
    done_groups[#done_groups + 1] = group
    if expired >= limit then break end
  end
  if #done_groups > 0 then redis.call('ZREM', key, unpack(done_groups)) end
end
return {requeued, dead, promoted, expired, buried}
