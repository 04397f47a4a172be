-- purge_dead: delete up to n dead-lettered jobs, oldest first.
-- KEYS: none; every key is built from ARGV[1].
-- ARGV[1] queue prefix; ARGV[2] n
-- Returns: how many were deleted (call again until 0).
-- Transitions: dead -> (gone).
local prefix, n = ARGV[1], tonumber(ARGV[2])
local ids = redis.call('ZRANGE', prefix .. 'dead', 0, n - 1)
for _, id in ipairs(ids) do
  redis.call('DEL', prefix .. 'job:' .. id, prefix .. 'cblog:' .. id)
end
if #ids > 0 then
  redis.call('ZREM', prefix .. 'dead', unpack(ids))
end
return #ids
