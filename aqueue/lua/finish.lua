-- finish: record the outcome of a batch of attempts (events: complete, retry, fail, release).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  the outcomes, msgpack: [[id, attempt, kind, delay ms, [field, value, ...]], ...]
--   kind complete: fields short, result            -> complete
--   kind retry:    fields err_type, err_msg, err_tb -> queued | scheduled (after delay ms),
--                  or dead once attempts (less releases) reach max_att
--   kind fail:     fields err_type, err_msg, err_tb -> failed
--   kind release:  handed back at shutdown          -> queued; not counted against the budget
-- Returns: per outcome 1 if accepted, 0 if refused by the fence (the attempt is not current).
local prefix, worker = ARGV[1], ARGV[2]
local outcomes = cmsgpack.unpack(ARGV[3])
local now = now_ms()
local now_s = int(now)
local accepted = {}
local done = {}
local requeued = 0
for j = 1, #outcomes do
  local o = outcomes[j]
  local id, attempt, kind, delay = o[1], int(o[2]), o[3], o[4]
  local jk = prefix .. 'job:' .. id
  -- the fence and what a completion or failure needs, in one read (a retry reads more)
  local f = redis.call('HMGET', jk, 'status', 'attempt', 'worker', 'ttl', 'cb', 'w')
  if f[1] == 'active' and f[2] == attempt and f[3] == worker then
    accepted[j] = 1
    done[#done + 1] = id
    local fields = o[5]
    local watched = f[6] == '1'
    if kind == 'retry' or kind == 'release' then
      local more = redis.call('HMGET', jk, 'max_att', 'released', 'sig', 'score')
      for k = 1, 4 do f[5 + k] = more[k] end
    end
    if kind == 'complete' then
      finish_terminal(prefix, jk, id, 'complete', now_s, f[4], f[5], fields, watched)
    elseif kind == 'fail' then
      finish_terminal(prefix, jk, id, 'failed', now_s, f[4], f[5], fields, watched)
    elseif kind ~= 'release' and budget_spent(attempt, f[7], f[6]) then
      fields[#fields + 1] = 'reason'
      fields[#fields + 1] = 'retry budget spent after attempt ' .. attempt
      finish_terminal(prefix, jk, id, 'dead', now, f[4], f[5], fields, watched)
    else
      if kind == 'release' then
        fields[#fields + 1] = 'released'
        fields[#fields + 1] = tonumber(f[7] or 0) + 1
      end
      local status = 'queued'
      if kind ~= 'release' and delay > 0 then
        status = 'scheduled'
        fields[#fields + 1] = 'due'
        fields[#fields + 1] = now + delay
        redis.call('ZADD', prefix .. 'scheduled', now + delay, id)
      else
        onto_lane(prefix, f[8], f[9], id)
        requeued = requeued + 1
      end
      fields[#fields + 1] = 'status'
      fields[#fields + 1] = status
      redis.call('HSET', jk, unpack(fields))
      if watched then publish_status(prefix, id, status) end
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
flush_tally(prefix, now)
return accepted
