"""The Lua scripts RedisBackend runs: each touches one key, so each runs on Cluster too."""

from __future__ import annotations

__all__ = ["CLAIM", "FILL", "GET_WITH_TTL", "GET_WITH_VERSIONS", "RELEASE_LOCK"]

# Compare-and-delete: a holder whose lock lapsed must not release its successor's.
RELEASE_LOCK = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

# A loader's claim on an absent key (SPEC §12): the marker is stored for the lease's
# milliseconds and nothing is returned; a key that exists is returned as it is.
CLAIM = """
local current = redis.call("get", KEYS[1])
if current then
    return current
end
redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
return false
"""

# A loader's write, fenced: only if the key still holds what the load started from
# (ARGV[1]: the whole value when ARGV[2] is "1", else a prefix of it, an envelope's
# header). ARGV[3] "set" stores ARGV[4] (for ARGV[5] ms; "0": no expiry); "del" removes
# the key (a claim given up). Anything written or deleted meanwhile wins.
FILL = """
local current
if ARGV[2] == "1" then
    current = redis.call("get", KEYS[1])
else
    current = redis.call("getrange", KEYS[1], 0, string.len(ARGV[1]) - 1)
end
if current ~= ARGV[1] then
    return 0
end
if ARGV[3] == "del" then
    redis.call("del", KEYS[1])
elseif ARGV[5] == "0" then
    redis.call("set", KEYS[1], ARGV[4])
else
    redis.call("set", KEYS[1], ARGV[4], "px", ARGV[5])
end
return 1
"""

# A tagged read in one round trip (single Redis; on Cluster the keys span slots): the
# entry, then the current version of each tag the reader expects it to carry.
GET_WITH_VERSIONS = """
local found = {redis.call("get", KEYS[1])}
for i = 2, #KEYS do
    found[i] = redis.call("get", KEYS[i])
end
return found
"""

# The near cache's read (SPEC §13): each key's value and its remaining milliseconds, read
# at the same instant, so a local copy never outlives the entry. Absent: nil, -2.
GET_WITH_TTL = """
local found = {}
for i = 1, #KEYS do
    local value = redis.call("get", KEYS[i])
    found[2 * i - 1] = value
    if value then
        found[2 * i] = redis.call("pttl", KEYS[i])
    else
        found[2 * i] = -2
    end
end
return found
"""
