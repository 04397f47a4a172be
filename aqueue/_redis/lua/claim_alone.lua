-- claim_alone: take the best suspect this worker can run, alone (event: claim).
-- Suspects are jobs whose lease lapsed (reap.lua). A worker takes one only with nothing else
-- in flight, and takes nothing more until it ends (claim.lua tells it when to drain): should
-- it kill this worker too, the blame is clear. Its `tries` entry says so ("|alone"), and
-- reap.lua counts that attempt against its budget whatever else the worker held by then.
-- KEYS[1]: the queue's stats key (declared for Cluster routing); others built from ARGV[1].
-- KEYS[2]: on a cluster, the queue's fence, never written (no call runs while its slot migrates).
-- ARGV[1]  queue prefix
-- ARGV[2]  worker id
-- ARGV[3]  lease, ms
-- ARGV[4..] the worker's listener names; a job is taken only if they include all of its own
-- Returns: {now ms, more (1: other suspects it can run wait), then none or one job:
--           id, attempt, released, spec} (as claim.lua's)
-- Transitions: queued -> active (attempt + 1: an entry in `running`).
local prefix, worker = ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local now = now_ms()
keyed_call('HDEL', idle_key(prefix), worker) -- it takes no posts while it runs one alone

local have = {}
for k = 4, #ARGV do have[ARGV[k]] = true end
local best, best_sig, best_score = nil, nil, nil
local fitting = 0 -- suspects it can run, counted up to two a lane
for _, sig in ipairs(keyed_call('SMEMBERS', suspects_key(prefix))) do
  if fits(have, #ARGV >= 4, sig) then
    local head = keyed_call('ZRANGE', suspect_lane_key(prefix, sig), '0', '1', 'WITHSCORES')
    if #head == 0 then
      keyed_call('SREM', suspects_key(prefix), sig)
    else
      fitting = fitting + #head / 2
      local score = tonumber(head[2])
      if not best or score < best_score then best, best_sig, best_score = head[1], sig, score end
    end
  end
end

local out = {now, fitting > 1 and 1 or 0}
if best then
  local spec = redis.call('HGET', spec_key(prefix), best)
  local attempts, released = tries_of(keyed_call('HGET', tries_key(prefix), best))
  off_lanes(prefix, best_sig, best)
  if spec then -- else purged while it waited
    local attempt = int(attempts + 1)
    keyed_call('HSET', tries_key(prefix), best, tries_entry(int(attempts), int(released), true))
    local claim = new_claim(worker, int(now + lease), out, #out)
    grant(claim, best, attempt, released, spec, run_entry(worker, attempt, int(now)))
    lease_jobs(prefix, claim)
    if keyed_call('SISMEMBER', watched_key(prefix), best) == 1 then
      redis.call('PUBLISH', events_key(prefix), cmsgpack.pack({'', 'active', {best}}))
    end
  end
end
if out[2] == 0 then keyed_call('SREM', draining_key(prefix), worker) end -- it serves on
return out
