-- redlock-rs lock: KEYS[1] key, ARGV[1] value, ARGV[2] ttl ms, ARGV[3] "1" = create if absent
-- Returns 1 when the key now holds ARGV[1] with the new ttl, 0 when absent and not
-- created, -1 when another value holds it. Idempotent for one value, so a replayed call is harmless.
local current = redis.call("GET", KEYS[1])
if current == ARGV[1] then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return 1
end
if current then
    return -1
end
if ARGV[3] == "1" then
    redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
    return 1
end
return 0
