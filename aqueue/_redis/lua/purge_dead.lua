-- purge_dead: delete up to n dead-lettered jobs, oldest first.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2] n
-- Returns: how many were deleted (call again until 0).
-- Transitions: dead -> (gone).
local prefix, n = ARGV[1], math.min(tonumber(ARGV[2]), 1000)
local ids = keyed_call('ZRANGE', dead_key(prefix), 0, n - 1)
if #ids > 0 then
  forget(prefix, ids)
  keyed_call('ZREM', dead_key(prefix), unpack(ids))
end
return #ids
