-- redlock-rs unlock: KEYS[1] key, ARGV[1] value, ARGV[2] tag, ARGV[3] the prefix of the
-- channel the release is announced on (the channel is the prefix and the key), or "" for
-- none. The message is the tag and the SHA1 of the value, "TAG:SHA1": the same on every
-- node for one release, so that a waiter is woken once per release, and never the value
-- itself (a fixed value is a takeover token).
-- Returns the tag (a number) when deleted, or {tag, n} when deleted and announced to n > 0
-- subscribers (waiters get the first try); 0 when absent; -1 when another value holds it.
local current = redis.call("GET", KEYS[1])
if current == ARGV[1] then
    redis.call("DEL", KEYS[1])
    if ARGV[3] ~= "" then
        -- A hint for waiters only: a server that denies it (an ACL without the channel)
        -- must not fail the release.
        local release = ARGV[2] .. ":" .. redis.sha1hex(ARGV[1])
        local heard = redis.pcall("PUBLISH", ARGV[3] .. KEYS[1], release)
        if type(heard) == "number" and heard > 0 then
            return {tonumber(ARGV[2]), heard}
        end
    end
    return tonumber(ARGV[2])
end
if current then
    return -1
end
return 0
