-- forward_done: a job's outputs were all posted to their queues: let go of them.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2..] the ids of the jobs forwarded
-- Returns: how many were still held (a lapsed lease taken over by another forwarder, which
--          posts them again: idempotent, see claim_forwards.lua, and lets go of them too)
local prefix = ARGV[1]
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
keyed_call('HDEL', outputs_key(prefix), unpack(ids))
return keyed_call('ZREM', forwarding_key(prefix), unpack(ids))
