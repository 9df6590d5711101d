"""Every snippet of SPEC §2, run as written, on memory and on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from chenu_cache import FallbackCache


class FakeDB:
    def __init__(self) -> None:
        self.calls = 0

    async def get_user(self, user_id: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0.05)
        return {"id": user_id, "name": "Ada"}


async def test_section_2_walkthrough(any_cache: FallbackCache) -> None:
    cache_service = any_cache
    db = FakeDB()
    user_data = {"id": "123", "roles": ["admin"]}

    await cache_service.set("key", {"data": "value"}, ttl=3600)
    value = await cache_service.get("key")
    assert value == {"data": "value"}
    await cache_service.set("123", user_data, namespace="user")
    user = await cache_service.get("123", namespace="user")
    assert user == user_data
    value = await cache_service.get("missing", default="fallback")
    assert value == "fallback"

    user = await cache_service.get_or_set("user:123", lambda: db.get_user("123"), ttl=3600)
    assert user == user_data  # the entry set above under namespace="user" is the same key
    assert db.calls == 0
    user = await cache_service.get_or_set("user:456", lambda: db.get_user("456"), ttl=3600)
    assert user == {"id": "456", "name": "Ada"}
    assert db.calls == 1

    assert await cache_service.invalidate("user:123") is True
    await cache_service.set("user:789", 1)
    assert await cache_service.invalidate_pattern("user:*") == 2
    await cache_service.set("1", 1, namespace="user")
    assert await cache_service.invalidate_namespace("user") == 1
    assert await cache_service.get("1", namespace="user") is None

    @cache_service.cached(ttl=300, namespace="user")
    async def get_user(user_id: str) -> dict[str, Any]:
        return await db.get_user(user_id)

    @cache_service.cached(key_builder=lambda user_id, **kw: f"user:{user_id}")
    async def get_user_profile(user_id: str, include_stats: bool = False) -> dict[str, Any]:
        return {"id": user_id, "stats": include_stats}

    calls = db.calls
    assert await get_user("user_123") == {"id": "user_123", "name": "Ada"}
    assert await get_user("user_123") == {"id": "user_123", "name": "Ada"}
    assert db.calls == calls + 1
    assert await get_user.invalidate("user_123") is True
    await get_user("user_123")
    assert db.calls == calls + 2

    assert await get_user_profile("7") == {"id": "7", "stats": False}
    assert await cache_service.get("user:7") == {"id": "7", "stats": False}

    stats = await cache_service.get_statistics()
    shape = stats.to_dict()
    assert shape["backend"] == cache_service.backend.name
    assert set(shape["redis"]) >= {"connected", "usedMemory", "connectedClients", "hitRate"}
    assert set(shape["memory"]) >= {"hits", "misses", "size", "hitRate"}
    await cache_service.close()


async def test_200_concurrent_misses_call_the_loader_once(any_cache: FallbackCache) -> None:
    db = FakeDB()
    results = await asyncio.gather(
        *(any_cache.get_or_set("user:cold", lambda: db.get_user("cold")) for _ in range(200)),
        return_exceptions=True,
    )
    assert db.calls == 1
    assert all(r == {"id": "cold", "name": "Ada"} for r in results), results[:3]
    stats = await any_cache.get_statistics()
    assert stats.loader.calls == 1
    assert stats.loader.coalesced == 199


async def test_bulk_operations(any_cache: FallbackCache) -> None:
    await any_cache.set_many({"a": 1, "b": None, "c": [1, 2]}, namespace="project")
    got = await any_cache.get_many(["a", "b", "c", "d"], namespace="project")
    assert got == {"a": 1, "b": None, "c": [1, 2]}
    assert await any_cache.get_many(["project:a", "nope"]) == {"project:a": 1}
    assert await any_cache.delete_many(["a", "b", "zz"], namespace="project") == 2
    assert await any_cache.get_many(["a", "b", "c"], namespace="project") == {"c": [1, 2]}
    assert await any_cache.get_many([]) == {}
    await any_cache.set_many({})
    assert await any_cache.delete_many([]) == 0


async def test_async_context_manager(redis_url: str, prefix: str) -> None:
    async with FallbackCache(redis_url=redis_url, prefix=prefix) as cache:
        assert cache.backend.name == "redis"
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        await cache.clear()


async def test_composed_backends(redis_url: str, prefix: str) -> None:
    from chenu_cache import MemoryBackend, RedisBackend

    cache = FallbackCache(
        primary=RedisBackend(redis_url, prefix=prefix), fallback=MemoryBackend(max_entries=10)
    )
    async with cache:
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
        assert cache.primary is not None
        assert await cache.primary.get("k") is not None
        await cache.clear()


async def test_bulk_calls_are_one_round_trip_on_redis(redis_url: str, prefix: str) -> None:
    import redis.asyncio as redis_asyncio

    raw = redis_asyncio.Redis.from_url(redis_url)
    cache = FallbackCache(redis_url=redis_url, prefix=prefix)
    try:
        await cache.initialize()
        await raw.config_resetstat()
        await cache.set_many({f"k{i}": i for i in range(50)})
        await cache.get_many([f"k{i}" for i in range(50)])
        await cache.delete_many([f"k{i}" for i in range(50)])
        stats = await raw.info("commandstats")
        assert stats["cmdstat_mget"]["calls"] == 1
        assert stats["cmdstat_unlink"]["calls"] == 1
        assert stats["cmdstat_set"]["calls"] == 50  # pipelined: one round trip
        assert "cmdstat_get" not in stats
    finally:
        await cache.clear()
        await cache.close()
        await raw.aclose()
