-- redlock-rs lock: KEYS[1] key, ARGV[1] value, ARGV[2] ttl ms, ARGV[3] mode, ARGV[4] tag.
-- Modes: "0" refresh only (extend), "1" create or refresh (extend with re-create),
-- "2" create only (acquire: never take over a key that is already set).
-- Returns the tag (a number from 1 to 2^53 - 1) when the key now holds ARGV[1] with the new
-- ttl, so that a late reply to another call can never be read as this one's; 0 when absent
-- and not created; when it may not be touched (another value holds it, or mode "2" found it
-- set), -2 - its remaining ttl in ms, so that a waiter knows when it frees, or -1 when the
-- key has no ttl.
local function refused()
    local ttl = redis.call("PTTL", KEYS[1])
    if ttl >= 0 then
        return -2 - ttl
    end
    return -1
end
if ARGV[3] == "2" then
    -- One SET NX in the common case: about a tenth less server time than GET then SET.
    if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
        return tonumber(ARGV[4])
    end
    return refused()
end
local current = redis.call("GET", KEYS[1])
if current == ARGV[1] then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return tonumber(ARGV[4])
end
if current then
    return refused()
end
if ARGV[3] == "0" then
    return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return tonumber(ARGV[4])
