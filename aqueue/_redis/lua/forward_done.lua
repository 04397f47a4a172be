-- forward_done: jobs' outputs were all posted to their queues: let go of them, and note on
-- each job's record where they went (`out`: what `trace` follows to the next stage).
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1] queue prefix; ARGV[2..] per job forwarded: its id, then what it was forwarded as
--         (msgpack [[queue, how many, tag], ...], see Forwarder.forward_once)
-- Returns: how many were still held (a lapsed lease taken over by another forwarder, which
--          posts them again: idempotent, see claim_forwards.lua, and lets go of them too)
local prefix = ARGV[1]
local ids = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  ids[#ids + 1] = id
  local jk = job_key(prefix, id)
  if redis.call('EXISTS', jk) == 1 then -- (not a record of its own, made of `out` alone)
    redis.pcall('HSET', jk, 'out', ARGV[i + 1]) -- a record of the wrong type: not noted
  end
end
if #ids == 0 then return 0 end
keyed_call('HDEL', outputs_key(prefix), unpack(ids))
return keyed_call('ZREM', forwarding_key(prefix), unpack(ids))
