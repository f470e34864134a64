-- redlock-rs fenced acquire: KEYS[1] the lock's key, KEYS[2] its fence (a key without
-- expiry, in the same hash slot); ARGV[1] value, ARGV[2] ttl ms, ARGV[3] the proposed
-- token, ARGV[4] tag.
-- Sets the key only if it is absent and the token is above the fence, keeps the token as
-- the fence, and returns the tag. Otherwise returns {refused, fence}: refused is 0 when
-- the token is not above the fence, or, when the key is set, -2 - its remaining ttl in ms
-- (-1 when it has no ttl), so that a waiter knows when it frees; fence is the node's
-- fence, so that the next proposal clears it.
local fence = redis.call("GET", KEYS[2])
if fence then
    fence = tonumber(fence)
    if not fence then
        return redis.error_reply("ERR the fence key " .. KEYS[2] .. " does not hold a number")
    end
else
    fence = 0
end
if redis.call("GET", KEYS[1]) then
    local ttl = redis.call("PTTL", KEYS[1])
    if ttl >= 0 then
        return {-2 - ttl, fence}
    end
    return {-1, fence}
end
if tonumber(ARGV[3]) <= fence then
    return {0, fence}
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("SET", KEYS[2], ARGV[3])
return tonumber(ARGV[4])
