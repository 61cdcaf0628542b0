-- Count one failed API key from a source address. KEYS: its counter; ARGV:
-- the window (s), which starts at the first failure. Returns {failures in the
-- window, seconds it still runs}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
