"""What the workers and the checker agree on: keys, tags, patterns, operation codes.

Two cache entries are backed by each database row ``i``: the *item* entry
(``ns{i % 4}:item:{i}``, written by ``set`` and read by ``get``/``get_or_set``) and the
*dec* entry (the decorated loader's result for ``i``, namespace ``dec``). Both carry the
tag ``grp:{i // GROUP_SIZE}``.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACES = 4
GROUP_SIZE = 50
PATTERN_DIGITS = "123456789"
DEC_NAMESPACE = "dec"
# The code of invalidate_namespace("dec") in the history's ``arg`` column.
DEC_NAMESPACE_CODE = NAMESPACES

# Operation codes, one byte each in the history.
GET = 0
GET_OR_SET = 1
DECORATED = 2
WRITE_SET = 3
WRITE_INVALIDATE = 4
INVALIDATE = 5
INVALIDATE_PATTERN = 6
INVALIDATE_NAMESPACE = 7
INVALIDATE_TAGS = 8

OP_NAMES = {
    GET: "get",
    GET_OR_SET: "get_or_set",
    DECORATED: "decorated",
    WRITE_SET: "write+set",
    WRITE_INVALIDATE: "write+invalidate",
    INVALIDATE: "invalidate",
    INVALIDATE_PATTERN: "invalidate_pattern",
    INVALIDATE_NAMESPACE: "invalidate_namespace",
    INVALIDATE_TAGS: "invalidate_tags",
}
READS = (GET, GET_OR_SET, DECORATED)

# Relative weights of the mix; writes are what make staleness possible, the rare
# wide invalidations are what exercise SCAN and journal widening.
MIX: dict[int, float] = {
    GET: 25,
    GET_OR_SET: 25,
    DECORATED: 20,
    WRITE_SET: 8,
    WRITE_INVALIDATE: 4,
    INVALIDATE: 6,
    INVALIDATE_PATTERN: 0.5,
    INVALIDATE_NAMESPACE: 0.1,
    INVALIDATE_TAGS: 2,
}

MISS = -1
FAILED = -2  # the call raised: the checker counts it, whatever it was


def item_namespace(i: int) -> str:
    return f"ns{i % NAMESPACES}"


def item_key(i: int) -> str:
    return f"item:{i}"


def group_of(i: int) -> int:
    return i // GROUP_SIZE


def tag_of(i: int) -> str:
    return f"grp:{group_of(i)}"


def pattern_of(namespace: int, digit: str) -> str:
    return f"ns{namespace}:item:{digit}*"


def encode_pattern(namespace: int, digit: str) -> int:
    return namespace * 10 + int(digit)


def decode_pattern(code: int) -> tuple[int, str]:
    return code // 10, str(code % 10)


def pattern_covers(code: int, i: int) -> bool:
    namespace, digit = decode_pattern(code)
    return i % NAMESPACES == namespace and str(i).startswith(digit)


@dataclass(frozen=True)
class Settings:
    """What every process of one run is configured with."""

    seconds: float
    seed: int
    workers: int
    tasks: int
    keys: int
    operation_timeout: float
    probe_interval: float
    probe_max_interval: float
    outage_ttl_cap: float
    ttl: float
    think: float
    loader_delay: float
    rss_limit_mb: float
    near_cache: str = "half"
    """Which workers read through a near cache: ``"all"``, ``"half"`` (even ids) or
    ``"none"``."""

    def near(self, wid: int) -> bool:
        return self.near_cache == "all" or (self.near_cache == "half" and wid % 2 == 0)
