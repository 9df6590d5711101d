"""Every way back to a primary replays what changed while it was away (issue: life cycle).

Before the fix, ``initialize()`` during an outage, or ``close()`` then ``initialize()``,
switched to Redis without replaying the journal: ``get("gone")`` returned the value
invalidated during the outage, with ``failbacks == 0``.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import MISSING, FallbackCache, RedisBackend
from chenu_cache._failover import Failover
from tests.conftest import eventually
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

PREFIX = "replay:"


def options(**extra: Any) -> dict[str, Any]:
    # A probe that waits far longer than any test: a failback seen here was made by the
    # path under test, not by the probe.
    extra.setdefault("probe_interval", 60.0)
    extra.setdefault("probe_max_interval", 60.0)
    return {
        "prefix": PREFIX,
        "read_env": False,
        "recent_window": 0,
        "operation_timeout": 0.1,
        **extra,
    }


async def outage_with_changes(cache: FallbackCache, server: RedisServer) -> None:
    """Seed, pause Redis, invalidate and replace during the outage, resume Redis."""
    await cache.set("gone", "before")
    await cache.set("replaced", "before")
    await cache.set("user:1", "before")
    server.pause()
    try:
        await cache.invalidate("gone")  # times out, fails over, then runs on memory
        assert cache.backend.name == "memory"
        await cache.set("replaced", "during")
        await cache.invalidate_namespace("user")
    finally:
        server.resume()


async def assert_nothing_resurrected(cache: FallbackCache, raw: redis_asyncio.Redis) -> None:
    assert cache.backend.name == "redis"
    stats = (await cache.get_statistics()).to_dict()
    assert stats["failbacks"] == 1, stats
    assert await cache.get("gone", default=MISSING) is MISSING
    assert await cache.get("replaced", default=MISSING) in (MISSING, "during")
    assert await cache.get("user:1", default=MISSING) is MISSING
    assert await raw.get(PREFIX + "gone") is None
    assert await raw.get(PREFIX + "user:1") is None


async def test_initialize_again_during_an_outage_replays(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = FallbackCache(redis_url=server.url, **options())
    try:
        await cache.initialize()
        await outage_with_changes(cache, server)
        await cache.initialize(server.url)  # Redis is back: must replay before serving
        await assert_nothing_resurrected(cache, raw)
    finally:
        await cache.close()


async def test_close_then_initialize_replays(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    cache = FallbackCache(**options())
    try:
        await cache.initialize(server.url)
        await outage_with_changes(cache, server)
        await cache.close()
        assert cache.backend.name == "memory"
        await cache.set("after-close", "memory-only")  # journaled too: Redis must learn
        await raw.set(PREFIX + "after-close", b"older, from before")
        await cache.initialize(server.url)
        await assert_nothing_resurrected(cache, raw)
        assert await cache.get("after-close", default=MISSING) is MISSING
    finally:
        await cache.close()


async def test_close_then_reopen_with_the_constructor_primary_replays(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = FallbackCache(primary=RedisBackend(server.url, prefix=PREFIX), **options())
    try:
        await cache.initialize()
        await outage_with_changes(cache, server)
        await cache.close()
        await cache.initialize()
        await assert_nothing_resurrected(cache, raw)
    finally:
        await cache.close()


async def test_initialize_while_redis_is_still_down_keeps_the_journal(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = FallbackCache(**options(probe_interval=0.05, probe_max_interval=0.2))
    try:
        await cache.initialize(server.url)
        await cache.set("gone", "before")
        server.pause()
        try:
            await cache.invalidate("gone")
            await cache.initialize(server.url)  # a new client, Redis still paused
            assert cache.backend.name == "memory"
        finally:
            server.resume()

        async def back() -> bool:
            return cache.backend.name == "redis"

        await eventually(back, timeout=10)  # the probe brings it back, replaying
        assert await cache.get("gone", default=MISSING) is MISSING
        assert await raw.get(PREFIX + "gone") is None
    finally:
        await cache.close()


async def test_probe_replays(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    cache = FallbackCache(**options(probe_interval=0.05, probe_max_interval=0.2))
    try:
        await cache.initialize(server.url)
        await outage_with_changes(cache, server)

        async def back() -> bool:
            return cache.backend.name == "redis"

        await eventually(back, timeout=10)
        await assert_nothing_resurrected(cache, raw)
    finally:
        await cache.close()


async def test_set_primary_keeps_the_journal_for_the_new_primary(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    await raw.set(PREFIX + "gone", b"stale")
    first = RedisBackend(server.url, prefix=PREFIX, operation_timeout=0.1)
    second = RedisBackend(server.url, prefix=PREFIX)
    failover = Failover(FallbackCache(read_env=False).fallback, first, probe_interval=60)
    try:
        server.pause()
        try:
            await failover.check()  # fails over
        finally:
            server.resume()
        failover.journal.add_keys(["gone"])
        failover.set_primary(second)
        assert failover.state == "open"  # not serving until the journal is replayed
        assert failover.active is failover.fallback
        assert await failover.recover()
        assert failover.active is second
        assert await raw.get(PREFIX + "gone") is None
    finally:
        await failover.close()
        await first.close()
        await second.close()


async def test_close_and_initialize_without_changes_is_no_failback(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = FallbackCache(**options())
    try:
        await cache.initialize(server.url)
        await cache.set("k", "v")
        await cache.close()
        await cache.initialize(server.url)
        stats = (await cache.get_statistics()).to_dict()
        assert stats["backend"] == "redis"
        assert stats["failbacks"] == 0  # nothing was owed: no replay, no failback
        assert await cache.get("k") == "v"
    finally:
        await cache.close()
