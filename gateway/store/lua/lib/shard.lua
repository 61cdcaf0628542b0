-- Every shard script starts with this: KEYS[1..NK] are keys.shard_keys(k) of
-- the shard it runs in, in the order of keys.SHARD_KEY_NAMES (prefixes of the
-- keys it builds from ids and names, and the shard's own keys); the script's
-- own keys come after, from KEYS[NK + 1].
local MSGP, DEPTH, EXPIRY, DELAYED, DLQ, WH_DUE, WH_LEASE, WH_TRY, WH_DEAD, WHQ, BATCHP, BOP, MO_DUE = unpack(KEYS, 1, NK)
