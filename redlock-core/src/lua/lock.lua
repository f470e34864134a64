-- redlock-rs lock: KEYS[1] key, ARGV[1] value, ARGV[2] ttl ms, ARGV[3] mode:
--   "0" refresh only (extend), "1" create or refresh (acquire with a value unique to
--   this call, or extend with re-create), "2" create only (acquire with a value that
--   may not be unique, such as a fixed one).
-- Returns 1 when the key now holds ARGV[1] with the new ttl, 0 when absent and not
-- created, -1 when it may not be touched (another value holds it, or mode "2" found it
-- set). Modes "0" and "1" are idempotent for one value, so a replayed call is harmless.
local current = redis.call("GET", KEYS[1])
if current == ARGV[1] and ARGV[3] ~= "2" then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return 1
end
if current then
    return -1
end
if ARGV[3] == "0" then
    return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
