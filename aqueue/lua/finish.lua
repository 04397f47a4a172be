-- finish: record the outcome of a batch of attempts (events: complete, retry, fail, release).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  the outcomes, msgpack: [[id, attempt, kind, delay ms, [field, value, ...], ttl s,
--          calls back (0|1), max_att], ...]; the last three from the spec the claim handed over
--   kind complete: fields short, result            -> complete
--   kind retry:    fields err_type, err_msg, err_tb -> queued | scheduled (after delay ms),
--                  or dead once attempts (less releases) reach max_att
--   kind fail:     fields err_type, err_msg, err_tb -> failed
--   kind release:  handed back at shutdown          -> queued; not counted against the budget
-- Returns: per outcome 1 if accepted, 0 if refused by the fence (the attempt is not current).
-- A completion writes one command of its own (its record's HSET): the fence and the watch
-- marks are read for the whole batch at once, and flush_tally lets go of them.
local prefix, worker = ARGV[1], ARGV[2]
local outcomes = cmsgpack.unpack(ARGV[3])
local now = now_ms()
local now_s = int(now)
local ids = {}
for j = 1, #outcomes do ids[j] = outcomes[j][1] end
local runs = redis.call('HMGET', prefix .. 'running', unpack(ids))
local awaited = redis.call('SMISMEMBER', prefix .. 'watched', unpack(ids))
local accepted = {}
local done = {} -- the accepted ids: out of `active` in one ZREM
local any_watched = false
local requeued = 0
for j = 1, #outcomes do
  local o = outcomes[j]
  local id, attempt, kind, delay = o[1], int(o[2]), o[3], o[4]
  local run = runs[j]
  if holds(run, worker, attempt) then
    accepted[j] = 1
    done[#done + 1] = id
    local jk = prefix .. 'job:' .. id
    local ttl, calls_back = o[6], o[7] == 1
    local fields = o[5]
    local watched = awaited[j] == 1
    any_watched = any_watched or watched
    -- the attempt's own facts, kept on its record (while it ran, its `running` entry)
    fields[#fields + 1] = 'ran'
    fields[#fields + 1] = run
    if kind == 'complete' then
      finish_terminal(prefix, jk, id, 'complete', now_s, ttl, calls_back, fields, watched)
    elseif kind == 'fail' then
      finish_terminal(prefix, jk, id, 'failed', now_s, ttl, calls_back, fields, watched)
    else
      local _, released = tries_of(redis.call('HGET', prefix .. 'tries', id))
      if kind ~= 'release' and budget_spent(attempt, released, o[8]) then
        fields[#fields + 1] = 'reason'
        fields[#fields + 1] = 'retry budget spent after attempt ' .. attempt
        finish_terminal(prefix, jk, id, 'dead', now, ttl, calls_back, fields, watched)
      else
        if kind == 'release' then released = released + 1 end
        fields[#fields + 1] = 'released'
        fields[#fields + 1] = int(released)
        back_in_line(prefix, id, attempt, released)
        local status = 'queued'
        if kind ~= 'release' and delay > 0 then
          status = 'scheduled'
          fields[#fields + 1] = 'due'
          fields[#fields + 1] = now + delay
          redis.call('ZADD', prefix .. 'scheduled', now + delay, id)
        else
          local f = redis.call('HMGET', jk, 'sig', 'score')
          onto_lane(prefix, f[1], f[2], id)
          requeued = requeued + 1
        end
        fields[#fields + 1] = 'status'
        fields[#fields + 1] = status
        redis.call('HSET', jk, unpack(fields))
        if watched then publish_status(prefix, id, status) end
      end
    end
  else
    accepted[j] = 0
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
