-- GCRA (generic cell rate algorithm) shared by every process: grant up to n of
-- the requested units now. KEYS: limiter; ARGV: rate per second, burst units, n.
-- Returns {granted, ms to wait before asking again}. Time is Redis's own, so
-- hosts with skewed clocks still share one rate.
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = 1000 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
local granted = math.min(tonumber(ARGV[3]), room)
if granted <= 0 then
  return {0, math.ceil(tat - now - (burst - 1) * interval)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
return {granted, 0}
