-- finish: record the outcome of a batch of attempts (events: complete, retry, fail, release).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  the outcomes' job ids, msgpack array
-- ARGV[4]  the outcomes, in the same order, as msgpack values one after another (no array:
--          cmsgpack.unpack_limit reads them in place, with no table of them all to build and
--          collect): per outcome attempt (text), kind, delay ms, ttl s, calls back (0|1),
--          max_att, n, then n items: field, value, ...; ttl, calls back and max_att are from
--          the spec the claim handed over
-- ARGV[5]  (only where some outcome here has outputs) msgpack map: job id -> its outputs, as
--          the forwarder reads them (see claim_forwards.lua): a completion's return values,
--          or a failure's routed error (on_error). Put in the forward outbox as the job ends
--          (complete, failed, dead), and only then: never for a retry, a refused or a
--          repeated outcome
--   kind complete: fields result, short            -> complete
--   kind chunked:  fields result (a reference), blob (an upload token), short -> complete:
--                  the upload `upload:<id>:<token>` becomes `blob:<id>` (aqueue/_results.py);
--                  refused, it is deleted
--   kind retry:    fields err_type, err_msg, err_tb -> queued | scheduled (after delay ms),
--                  or dead once attempts (less releases) reach max_att
--   kind fail:     fields err_type, err_msg, err_tb -> failed
--   kind release:  handed back at shutdown          -> queued; not counted against the budget
--                  (a suspect run alone, see claim_alone.lua, waits to run alone again)
--   (a job to wait again whose record's lane cannot be read is scheduled now: the reaper
--   buries it, see promote_due)
-- Returns: a string, per outcome '1' if accepted (or recorded already: the same outcome sent
-- again), '0' if refused by the fence (the attempt is not current). One bulk reply, not an
-- integer reply per outcome: cheaper to make for Redis and to read for the worker.
-- The worker's count of recorded outcomes (`done`, for `aqueue status`) grows by the accepted.
-- A completion writes one command of its own (its record's HSET): the fence and the watch
-- marks are read for the whole batch at once, and flush_tally lets go of them.
local prefix, worker = ARGV[1], ARGV[2]
local ids, stream = cmsgpack.unpack(ARGV[3]), ARGV[4]
local outputs = ARGV[5] and cmsgpack.unpack(ARGV[5]) -- nil on the plain path: nothing more
local forwarded = false
local function forward_outputs(id)
  local out = outputs and outputs[id]
  if out then
    keyed_call('HSET', outputs_key(prefix), id, out)
    keyed_call('RPUSH', forward_key(prefix), id)
    forwarded = true
  end
end
local read = cmsgpack.unpack_limit -- (stream, n, offset): next offset (-1: at the end), values
local after = 0 -- where the values last read end: the next outcome starts there
local function kept(nxt, ...)
  after = nxt
  return ...
end
-- n values from `at`. Each outcome's fields are read once, last (so `after` moves past them).
local function fields(at, n)
  if n == 0 then
    after = at
    return
  end
  return kept(read(stream, n, at))
end
-- A chunked result's upload token: its fields are result, reference, blob, token, ...
local function upload_of(at)
  local _, _, _, name, token = read(stream, 4, at)
  if name ~= 'blob' or type(token) ~= 'string' then return nil end
  return token
end
local now = now_ms()
local now_s = int(now)
local runs = keyed_call('HMGET', running_key(prefix), unpack(ids))
local awaited = each_in('SMISMEMBER', watched_key(prefix), ids)
local accepted = {}
local done, ndone = {}, 0 -- the accepted ids: out of `active` in one ZREM
local requeued = 0
for j = 1, #ids do
  local id = ids[j]
  local first, attempt, kind, delay, ttl, calls_back, max_att, n = read(stream, 7, after)
  local run = runs[j]
  if holds(run, worker, attempt) then
    accepted[j] = '1'
    ndone = ndone + 1
    done[ndone] = id
    local jk = job_key(prefix, id)
    calls_back = calls_back == 1
    local watched = awaited[j] == 1
    -- the attempt's own facts go on its record (while it ran, its `running` entry): `ran`
    if kind == 'complete' or kind == 'chunked' then
      local result = nil -- rides along with the event (saving its waiter a read) when small
      if watched and n >= 2 then
        local _, name, value = read(stream, 2, first)
        if name == 'result' and #value <= 4096 then result = value end
      end
      if kind == 'chunked' then adopt_chunks(prefix, id, upload_of(first), ttl) end
      finish_terminal(prefix, jk, id, 'complete', now_s, ttl, calls_back, watched, result,
        'ran', run, fields(first, n))
      forward_outputs(id)
    elseif kind == 'fail' then
      finish_terminal(prefix, jk, id, 'failed', now_s, ttl, calls_back, watched, nil,
        'ran', run, fields(first, n))
      forward_outputs(id)
    else
      local _, released, alone = tries_of(keyed_call('HGET', tries_key(prefix), id))
      if kind ~= 'release' and budget_spent(attempt, released, max_att) then
        finish_terminal(prefix, jk, id, 'dead', now, ttl, calls_back, watched, nil,
          'reason', 'retry budget spent after attempt ' .. attempt, 'ran', run,
          fields(first, n))
        forward_outputs(id)
      else
        if kind == 'release' then released = released + 1 end
        back_in_line(prefix, id, attempt, released)
        local status, sig, score = 'queued', nil, nil
        if kind == 'release' or delay <= 0 then
          sig, score = lane_of(redis.call('HGET', jk, 'posted'))
        end
        if sig then
          if alone and kind == 'release' then -- it has not shown it is innocent yet
            onto_suspects(prefix, sig, score, id)
          else
            onto_lane(prefix, sig, score, id)
          end
          requeued = requeued + 1
          redis.call('HSET', jk, 'status', status, 'released', int(released), 'ran', run,
            fields(first, n))
        else -- after its delay; or at once, if its lane cannot be read: then the reaper's
          -- promote_due buries it (see bury), and it is never in no list meanwhile
          status = 'scheduled'
          local due = int(now + ((kind ~= 'release' and delay > 0) and delay or 0))
          keyed_call('ZADD', scheduled_key(prefix), due, id)
          redis.call('HSET', jk, 'status', status, 'due', due, 'released',
            int(released), 'ran', run, fields(first, n))
        end
        if watched then publish_status(prefix, id, status) end
      end
    end
  else
    -- the same outcome sent again (its first reply was lost) finds itself recorded: a
    -- complete or failed record whose `ran` is this attempt (only a finish writes those)
    local upload = kind == 'chunked' and upload_of(first)
    fields(first, n) -- passed over
    local f = redis.call('HMGET', job_key(prefix, id), 'status', 'ran')
    local ended_as = (kind == 'complete' or kind == 'chunked') and 'complete'
      or kind == 'fail' and 'failed'
    local recorded = f[1] == ended_as and f[2] and holds(f[2], worker, attempt)
    accepted[j] = recorded and '1' or '0'
    if upload and not recorded then
      redis.call('UNLINK', upload_key(prefix, id, upload))
    end
  end
end
if ndone > 0 then
  keyed_call('ZREM', active_key(prefix), unpack(done))
  incr(done_key(prefix), worker, ndone) -- a count only: nothing there stops the finish
end
if requeued > 0 then
  redis.call('PUBLISH', wake_key(prefix), 'requeued')
end
if forwarded then
  redis.call('PUBLISH', forwards_key(prefix), '')
end
return table.concat(accepted)
