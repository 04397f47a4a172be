-- progress: a running attempt reports progress (no status change).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] job id; ARGV[3] attempt; ARGV[4] worker id;
-- ARGV[5] value (encoded); ARGV[6] message ('' = none)
-- Returns: 1 if recorded, 0 if refused by the fence.
local prefix, id = ARGV[1], ARGV[2]
local jk = job_key(prefix, id)
if not holds_lease(prefix, id, ARGV[3], ARGV[4]) then
  return 0
end
redis.call('HSET', jk, 'progress', ARGV[5], 'progress_msg', ARGV[6])
redis.call('PUBLISH', events_key(prefix), cmsgpack.pack({id, 'progress', ARGV[5], ARGV[6]}))
return 1
