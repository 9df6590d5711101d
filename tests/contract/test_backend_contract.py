"""One contract, every backend: what the Backend protocol promises, checked on each.

A third-party backend can run this suite by adding a case to the ``harness`` fixture.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from chenu_cache import Backend, BackendStats, MemoryBackend, RedisBackend
from tests.conftest import DEPLOYMENTS, FakeClock, eventually


@dataclass
class Harness:
    backend: Backend
    clock: FakeClock | None  # None: real time (Redis expires entries on its own clock)

    async def expire(self, key: str, ttl: float) -> None:
        """Let an entry set with ``ttl`` run out, then check it reads as missing."""
        if self.clock is not None:
            self.clock.advance(ttl + 0.001)
            assert await self.backend.get(key) is None
            return

        async def gone() -> bool:
            return await self.backend.get(key) is None

        await eventually(gone, timeout=ttl + 5)


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def harness(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str
) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryBackend(clock=clock), clock)
        return
    url: str = request.getfixturevalue(DEPLOYMENTS[request.param])
    backend = RedisBackend(url, prefix=prefix)
    try:
        yield Harness(backend, None)
    finally:
        await backend.clear()
        await backend.close()


async def test_satisfies_protocol(harness: Harness) -> None:
    assert isinstance(harness.backend, Backend)
    assert harness.backend.name in {"memory", "redis"}


async def test_missing_key_reads_none(harness: Harness) -> None:
    assert await harness.backend.get("nope") is None
    assert await harness.backend.ttl("nope") is None


@pytest.mark.parametrize("value", [b"", b"plain", bytes(range(256)), b"\x00" * 10_000])
async def test_bytes_round_trip_exactly(harness: Harness, value: bytes) -> None:
    await harness.backend.set("k", value, None)
    assert await harness.backend.get("k") == value


async def test_overwrite_replaces_value_and_ttl(harness: Harness) -> None:
    b = harness.backend
    await b.set("k", b"one", 100)
    await b.set("k", b"two", None)
    assert await b.get("k") == b"two"
    assert await b.ttl("k") == math.inf


async def test_ttl_reports_remaining_time(harness: Harness) -> None:
    b = harness.backend
    await b.set("k", b"v", 30)
    remaining = await b.ttl("k")
    assert remaining is not None
    assert 29 < remaining <= 30
    await b.set("forever", b"v", None)
    assert await b.ttl("forever") == math.inf


async def test_entry_expires_after_ttl(harness: Harness) -> None:
    b = harness.backend
    await b.set("short", b"v", 0.05)
    await b.set("long", b"v", 60)
    assert await b.get("short") == b"v"
    await harness.expire("short", 0.05)
    assert await b.ttl("short") is None
    assert await b.get("long") == b"v"


async def test_millisecond_ttl_is_not_rounded_to_zero(harness: Harness) -> None:
    await harness.backend.set("k", b"v", 0.0004)
    # Rounded up to 1 ms, never to "no expiry" and never refused.
    ttl = await harness.backend.ttl("k")
    assert ttl is None or ttl <= 0.001


async def test_get_many_keeps_order_and_reports_misses(harness: Harness) -> None:
    b = harness.backend
    await b.set("a", b"1", None)
    await b.set("c", b"3", None)
    assert await b.get_many(["a", "b", "c", "a"]) == [b"1", None, b"3", b"1"]
    assert await b.get_many([]) == []


async def test_set_many_applies_each_ttl(harness: Harness) -> None:
    b = harness.backend
    await b.set_many([("x", b"1", None), ("y", b"2", 0.05), ("z", b"3", 60)])
    assert await b.get_many(["x", "y", "z"]) == [b"1", b"2", b"3"]
    await harness.expire("y", 0.05)
    assert await b.get_many(["x", "y", "z"]) == [b"1", None, b"3"]
    await b.set_many([])


async def test_delete_reports_what_existed(harness: Harness) -> None:
    b = harness.backend
    await b.set_many([("a", b"1", None), ("b", b"2", None)])
    assert await b.delete("a") is True
    assert await b.delete("a") is False
    assert await b.delete_many(["a", "b", "c"]) == 1
    assert await b.delete_many([]) == 0
    assert await b.get_many(["a", "b"]) == [None, None]


async def _scan_all(b: Backend, pattern: str, count: int) -> list[str]:
    keys: list[str] = []
    cursor = 0
    for _ in range(10_000):
        cursor, page = await b.scan(pattern, cursor, count)
        keys.extend(page)
        if cursor == 0:
            return keys
    raise AssertionError("scan never finished")


async def test_scan_pages_through_every_match(harness: Harness) -> None:
    b = harness.backend
    users = {f"user:{i}" for i in range(230)}
    await b.set_many([(k, b"v", None) for k in users])
    await b.set_many([(f"agent:{i}", b"v", None) for i in range(40)])
    found = await _scan_all(b, "user:*", 25)
    assert set(found) == users
    assert set(await _scan_all(b, "*", 1000)) == users | {f"agent:{i}" for i in range(40)}
    assert await _scan_all(b, "nomatch*", 10) == []


async def test_scan_skips_expired_entries(harness: Harness) -> None:
    b = harness.backend
    await b.set("gone", b"v", 0.05)
    await b.set("kept", b"v", None)
    await harness.expire("gone", 0.05)
    assert await _scan_all(b, "*", 10) == ["kept"]


async def test_scan_survives_reads_between_pages(harness: Harness) -> None:
    b = harness.backend
    keys = [f"k{i:03d}" for i in range(60)]
    await b.set_many([(k, b"v", None) for k in keys])
    seen: set[str] = set()
    cursor = 0
    while True:
        cursor, page = await b.scan("k*", cursor, 7)
        seen.update(page)
        await b.get_many(keys[::-1])  # reorders an LRU; must not skip anything
        if cursor == 0:
            break
    assert seen == set(keys)


async def test_delete_pattern_uses_redis_glob(harness: Harness) -> None:
    b = harness.backend
    keys = ["user:1", "user:22", "user", "users:1", "user:a", "agent:1", "u[x]"]
    await b.set_many([(k, b"v", None) for k in keys])
    assert await b.delete_pattern("user:?") == 2
    assert sorted(await _scan_all(b, "*", 100)) == sorted(
        ["user:22", "user", "users:1", "agent:1", "u[x]"]
    )
    assert await b.delete_pattern("u\\[x]") == 1
    assert await b.delete_pattern("user[s:]*") == 2
    assert sorted(await _scan_all(b, "*", 100)) == ["agent:1", "user"]


async def test_clear_removes_everything_it_owns(harness: Harness) -> None:
    b = harness.backend
    await b.set_many([(f"k{i}", b"v", None) for i in range(120)])
    assert await b.clear() == 120
    assert await _scan_all(b, "*", 100) == []
    assert await b.clear() == 0


async def test_stats_count_hits_and_misses(harness: Harness) -> None:
    b = harness.backend
    await b.set("k", b"v", None)
    before = await b.stats()
    await b.get("k")
    await b.get("missing")
    await b.get_many(["k", "missing"])
    after = await b.stats()
    assert isinstance(after, BackendStats)
    assert after.name == b.name
    assert after.hits - before.hits == 2
    assert after.misses - before.misses == 2


async def test_ping_answers(harness: Harness) -> None:
    latency = await harness.backend.ping()
    assert latency >= 0


async def test_keys_with_glob_characters_and_unicode(harness: Harness) -> None:
    b = harness.backend
    keys = ["a*b", "a?b", "a[b]", "caf\u00e9:1", "\u65e5\u672c:2", "back\\slash"]
    for k in keys:
        await b.set(k, k.encode(), None)
    for k in keys:
        assert await b.get(k) == k.encode()
    assert sorted(await _scan_all(b, "*", 100)) == sorted(keys)
    assert await _scan_all(b, "caf?:1", 100) == []  # '?' is one byte; é is two
    assert await _scan_all(b, "caf??:1", 100) == ["caf\u00e9:1"]
