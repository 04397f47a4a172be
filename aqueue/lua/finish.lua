-- finish: record the outcome of a batch of attempts (events: complete, retry, fail, release).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  the outcomes, msgpack, one flat array (no table per outcome to build): per
--          outcome id, attempt (text), kind, delay ms, ttl s, calls back (0|1), max_att, n,
--          then n items: field, value, ...; ttl, calls back and max_att are from the spec
--          the claim handed over
--   kind complete: fields short, result            -> complete
--   kind retry:    fields err_type, err_msg, err_tb -> queued | scheduled (after delay ms),
--                  or dead once attempts (less releases) reach max_att
--   kind fail:     fields err_type, err_msg, err_tb -> failed
--   kind release:  handed back at shutdown          -> queued; not counted against the budget
-- Returns: per outcome 1 if accepted (or recorded already: the same outcome sent again), 0 if
-- refused by the fence (the attempt is not current).
-- A completion writes one command of its own (its record's HSET): the fence and the watch
-- marks are read for the whole batch at once, and flush_tally lets go of them.
local prefix, worker = ARGV[1], ARGV[2]
local flat = cmsgpack.unpack(ARGV[3])
local now = now_ms()
local now_s = int(now)
local ids, starts = {}, {}
local b = 1
while b <= #flat do
  ids[#ids + 1] = flat[b]
  starts[#starts + 1] = b
  b = b + 8 + flat[b + 7]
end
local runs = redis.call('HMGET', prefix .. 'running', unpack(ids))
local awaited = redis.call('SMISMEMBER', prefix .. 'watched', unpack(ids))
local jobs = prefix .. 'job:'
local accepted = {}
local done = {} -- the accepted ids: out of `active` in one ZREM
local any_watched = false
local requeued = 0
for j = 1, #ids do
  b = starts[j]
  local id, attempt, kind = flat[b], flat[b + 1], flat[b + 2]
  local first, last = b + 8, b + 7 + flat[b + 7] -- its fields
  local run = runs[j]
  if holds(run, worker, attempt) then
    accepted[j] = 1
    done[#done + 1] = id
    local jk = jobs .. id
    local ttl, calls_back = flat[b + 4], flat[b + 5] == 1
    local watched = awaited[j] == 1
    any_watched = any_watched or watched
    -- the attempt's own facts go on its record (while it ran, its `running` entry): `ran`
    if kind == 'complete' then
      local result = nil -- rides along with the event (saving its waiter a read) when small
      if watched and flat[first] == 'result' and #flat[first + 1] <= 4096 then
        result = flat[first + 1]
      end
      finish_terminal(prefix, jk, id, 'complete', now_s, ttl, calls_back, watched, result,
        'ran', run, unpack(flat, first, last))
    elseif kind == 'fail' then
      finish_terminal(prefix, jk, id, 'failed', now_s, ttl, calls_back, watched, nil,
        'ran', run, unpack(flat, first, last))
    else
      local _, released = tries_of(redis.call('HGET', prefix .. 'tries', id))
      if kind ~= 'release' and budget_spent(attempt, released, flat[b + 6]) then
        finish_terminal(prefix, jk, id, 'dead', now, ttl, calls_back, watched, nil,
          'reason', 'retry budget spent after attempt ' .. attempt, 'ran', run,
          unpack(flat, first, last))
      else
        if kind == 'release' then released = released + 1 end
        back_in_line(prefix, id, attempt, released)
        local delay = flat[b + 3]
        local status = 'queued'
        if kind ~= 'release' and delay > 0 then
          status = 'scheduled'
          redis.call('ZADD', prefix .. 'scheduled', now + delay, id)
          redis.call('HSET', jk, 'status', status, 'due', now + delay, 'released',
            int(released), 'ran', run, unpack(flat, first, last))
        else
          local f = redis.call('HMGET', jk, 'sig', 'score')
          onto_lane(prefix, f[1], f[2], id)
          requeued = requeued + 1
          redis.call('HSET', jk, 'status', status, 'released', int(released), 'ran', run,
            unpack(flat, first, last))
        end
        if watched then publish_status(prefix, id, status) end
      end
    end
  else
    -- the same outcome sent again (its first reply was lost) finds itself recorded: a
    -- complete or failed record whose `ran` is this attempt (only a finish writes those)
    local f = redis.call('HMGET', jobs .. id, 'status', 'ran')
    local recorded = f[1] == (kind == 'complete' and 'complete' or kind == 'fail' and 'failed')
    accepted[j] = (recorded and f[2] and holds(f[2], worker, attempt)) and 1 or 0
  end
end
if #done > 0 then
  redis.call('ZREM', prefix .. 'active', unpack(done))
end
if requeued > 0 then
  redis.call('PUBLISH', prefix .. 'wake', 'requeued')
end
flush_tally(prefix, now, any_watched)
return accepted
