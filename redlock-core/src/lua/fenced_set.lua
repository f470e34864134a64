-- redlock-rs fenced write: KEYS[1] the data, KEYS[2] its fence (the token of the last
-- write); ARGV[1] the value, ARGV[2] the writer's token.
-- Writes only when the token is at least the fence (a holding may write many times), and
-- keeps the token as the fence. Returns 1 when written, or -F when a writer with the
-- larger token F wrote first: the caller's holding has passed.
local fence = redis.call("GET", KEYS[2])
if fence then
    fence = tonumber(fence)
    if not fence then
        return redis.error_reply("ERR the fence key " .. KEYS[2] .. " does not hold a number")
    end
    if tonumber(ARGV[2]) < fence then
        return -fence
    end
end
redis.call("SET", KEYS[1], ARGV[1])
redis.call("SET", KEYS[2], ARGV[2])
return 1
