-- finish: record the outcome of a batch of attempts (events: complete, retry, fail, release).
-- KEYS: none; every key is built from ARGV[1].
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  n, the number of outcomes
-- then, per outcome: id, attempt, kind, delay ms, nfields, then nfields field/value pairs
--   kind complete: fields short, result            -> complete
--   kind retry:    fields err_type, err_msg, err_tb -> queued | scheduled (after delay ms),
--                  or dead once attempts (less releases) reach max_att
--   kind fail:     fields err_type, err_msg, err_tb -> failed
--   kind release:  handed back at shutdown          -> queued; not counted against the budget
-- Returns: per outcome 1 if accepted, 0 if refused by the fence (the attempt is not current).
local prefix, worker = ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local now = now_ms()
local accepted = {}
local done = {}
local requeued = 0
local i = 4
for j = 1, n do
  local id, attempt, kind, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local nf = tonumber(ARGV[i + 4])
  local first = i + 5
  i = first + 2 * nf
  local jk = prefix .. 'job:' .. id
  if holds_lease(jk, attempt, worker) then
    accepted[j] = 1
    done[#done + 1] = id
    if nf > 0 then
      redis.call('HSET', jk, unpack(ARGV, first, first + 2 * nf - 1))
    end
    local f = redis.call('HMGET', jk, 'ttl', 'cb', 'max_att', 'released', 'sig', 'score')
    if kind == 'complete' then
      finish_terminal(prefix, jk, id, 'complete', now, f[1], f[2])
    elseif kind == 'fail' then
      finish_terminal(prefix, jk, id, 'failed', now, f[1], f[2])
    elseif kind == 'release' then
      redis.call('HINCRBY', jk, 'released', 1)
      enqueue(prefix, jk, id, f[5], f[6])
      publish_status(prefix, id, 'queued')
      requeued = requeued + 1
    elseif tonumber(attempt) - tonumber(f[4]) >= tonumber(f[3]) then
      redis.call('HSET', jk, 'reason', 'retry budget spent after attempt ' .. attempt)
      finish_terminal(prefix, jk, id, 'dead', now, f[1], f[2])
    elseif delay > 0 then
      redis.call('HSET', jk, 'status', 'scheduled', 'due', now + delay)
      redis.call('ZADD', prefix .. 'scheduled', now + delay, id)
      publish_status(prefix, id, 'scheduled')
    else
      enqueue(prefix, jk, id, f[5], f[6])
      publish_status(prefix, id, 'queued')
      requeued = requeued + 1
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
