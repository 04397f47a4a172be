-- watch: a client is about to await a job's outcome; mark it so that its status changes are
-- published (jobs nobody awaits cost no PUBLISH), and read its status in the same step, so
-- an outcome is either seen here or published later — never missed.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2..] job ids
-- Returns: the status of each job, false where it does not exist.
local prefix = ARGV[1]
local out = {}
local terminal = {complete = true, failed = true, dead = true, cancelled = true}
for k = 2, #ARGV do
  local id = ARGV[k]
  local status = live_status(prefix, id, redis.call('HGET', job_key(prefix, id), 'status'))
  if status and not terminal[status] then
    keyed_call('SADD', watched_key(prefix), id)
  end
  out[k - 1] = status
end
return out
