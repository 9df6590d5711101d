"""Versioned tags (SPEC §14): invalidate everything about one thing, in every process.

On memory, a real Redis, a Cluster and Sentinel; two caches on one Redis stand in for
two processes. Loaders that race an invalidation wait on events the test sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import MISSING, FallbackCache
from chenu_cache.exceptions import CacheTypeError, InvalidKeyError
from tests.conftest import DEPLOYMENTS, eventually
from tests.redis_server import RedisServer


@dataclass
class Account:
    id: int
    org: str


async def test_tagged_entries_across_namespaces_and_functions_become_misses(
    any_cache: FallbackCache,
) -> None:
    calls: list[str] = []

    @any_cache.cached(namespace="user", tags=["user:{user_id}"])
    async def profile(user_id: int) -> dict[str, Any]:
        calls.append(f"profile:{user_id}")
        return {"id": user_id}

    @any_cache.cached(namespace="search", tags=["user:{account.id}", "org:{account.org}"])
    async def feed(account: Account, page: int = 1) -> list[int]:
        calls.append(f"feed:{account.id}")
        return [account.id, page]

    ada, bob = Account(1, "acme"), Account(2, "acme")
    await any_cache.set("settings:1", {"theme": "dark"}, tags=["user:1"])
    await any_cache.set("settings:2", {"theme": "light"}, tags=["user:2"])
    await any_cache.set("plain", "untagged")
    for _ in range(2):  # the second round is all hits
        assert await profile(1) == {"id": 1}
        assert await profile(2) == {"id": 2}
        assert await feed(ada) == [1, 1]
        assert await feed(bob) == [2, 1]
    assert len(calls) == 4

    await any_cache.invalidate_tags("user:1")

    assert await any_cache.get("settings:1", default=MISSING) is MISSING
    assert await any_cache.get("settings:2") == {"theme": "light"}
    assert await any_cache.get("plain") == "untagged"
    assert await profile(2) == {"id": 2}
    assert await feed(bob) == [2, 1]
    assert len(calls) == 4  # untouched entries still hit
    assert await profile(1) == {"id": 1}
    assert await feed(ada) == [1, 1]
    assert calls[4:] == ["profile:1", "feed:1"]  # reloaded, then hits again
    assert await profile(1) == {"id": 1}
    assert len(calls) == 6

    await any_cache.invalidate_tags("org:acme")
    assert await feed(bob) == [2, 1]
    assert calls[-1] == "feed:2"
    stats = await any_cache.get_statistics()
    assert stats.tag_invalidations == 2
    assert stats.stale_by_tag >= 4
    assert (await any_cache.get_many(["settings:1", "settings:2"])) == {
        "settings:2": {"theme": "light"}
    }


async def test_get_or_set_with_tags_and_a_type(any_cache: FallbackCache) -> None:
    def load() -> Account:
        return Account(7, "acme")

    got = await any_cache.get_or_set("acct:7", load, tags=["org:acme"], type=Account)
    assert got == Account(7, "acme")
    assert await any_cache.get("acct:7", type=Account) == Account(7, "acme")
    await any_cache.invalidate_tags("org:acme", "org:other")
    assert await any_cache.get("acct:7", default=MISSING) is MISSING


@pytest.fixture(params=list(DEPLOYMENTS))
async def two_caches(
    request: pytest.FixtureRequest, prefix: str
) -> AsyncIterator[tuple[FallbackCache, FallbackCache]]:
    url: str = request.getfixturevalue(DEPLOYMENTS[request.param])
    first = FallbackCache(redis_url=url, prefix=prefix, read_env=False)
    second = FallbackCache(redis_url=url, prefix=prefix, read_env=False)
    await first.initialize()
    await second.initialize()
    try:
        yield first, second
    finally:
        await first.clear()
        await first.close()
        await second.close()


@pytest.mark.redis
async def test_an_invalidation_in_one_process_reaches_the_other(
    two_caches: tuple[FallbackCache, FallbackCache],
) -> None:
    here, there = two_caches
    await here.set("user:1", {"v": 1}, tags=["user:1"])
    await here.get_or_set("post:9", lambda: "by user 1", tags=["user:1", "post:9"])
    assert await there.get("user:1") == {"v": 1}
    await there.invalidate_tags("user:1")
    assert await here.get("user:1", default=MISSING) is MISSING
    assert await here.get("post:9", default=MISSING) is MISSING


@pytest.mark.redis
async def test_a_load_racing_a_tag_invalidation_leaves_no_stale_entry(
    two_caches: tuple[FallbackCache, FallbackCache],
) -> None:
    loading, other = two_caches
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, int]:
        started.set()
        await release.wait()
        return {"version": 1}

    task = asyncio.create_task(loading.get_or_set("user:1", slow, tags=["user:1"]))
    await asyncio.wait_for(started.wait(), 5)
    await other.invalidate_tags("user:1")
    release.set()
    assert await asyncio.wait_for(task, 5) == {"version": 1}  # its caller gets it
    # Stored or not, no reader ever sees it: its versions predate the invalidation.
    assert await other.get("user:1", default=MISSING) is MISSING
    assert await loading.get("user:1", default=MISSING) is MISSING
    assert await loading.get_or_set("user:1", lambda: {"version": 2}, tags=["user:1"]) == {
        "version": 2
    }


@pytest.mark.redis
async def test_keys_are_the_entries_and_one_version_per_tag(redis_url: str, prefix: str) -> None:
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        async with FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False) as cache:
            for i in range(300):
                await cache.set(f"item:{i}", i, tags=[f"group:{i % 3}", "all"])
            await cache.invalidate_tags("group:1", "all")
            keys = [key async for key in raw.scan_iter(match=f"{prefix}*", count=1000)]
            assert len(keys) == 300 + 4  # no per-tag sets of keys, nothing to sweep
            page = await cache.scan("*", count=1000)
            assert len(page[1]) == 300  # listings never show version keys
            await cache.clear()
            assert [key async for key in raw.scan_iter(match=f"{prefix}*")] == []
    finally:
        await raw.aclose()


async def test_tag_invalidations_during_an_outage_are_applied_at_failback(
    server: RedisServer,
) -> None:
    async with FallbackCache(
        redis_url=server.url,
        operation_timeout=0.25,
        probe_interval=0.05,
        recent_window=0,  # else the writes just before the outage are replayed too
        read_env=False,
    ) as cache:
        await cache.set("user:1", "in redis", tags=["user:1"])
        await cache.set("user:2", "kept", tags=["user:2"])
        server.pause()  # SIGSTOP: what Redis holds survives the outage
        await cache.get("anything")  # times out, fails over
        assert cache.backend.name == "memory"
        await cache.set("memo:1", "on memory", tags=["user:1"])
        await cache.invalidate_tags("user:1")  # journaled
        assert await cache.get("memo:1", default=MISSING) is MISSING
        server.resume()

        async def back() -> bool:
            await cache.get("ping")
            return cache.backend.name == "redis"

        await eventually(back, timeout=20)
        assert await cache.get("user:1", default=MISSING) is MISSING
        assert await cache.get("user:2") == "kept"


async def test_templates_are_checked_at_decoration() -> None:
    cache = FallbackCache(read_env=False)
    with pytest.raises(CacheTypeError, match="user_id"):

        @cache.cached(tags=["user:{user_id}"])
        async def wrong(uid: int) -> int:
            return uid

    with pytest.raises(CacheTypeError):

        @cache.cached(tags="user:{uid}")  # a string, not a list of templates
        async def single(uid: int) -> int:
            return uid


@pytest.mark.parametrize("bad", ["", "has space", "x" * 300, "\n"])
async def test_bad_tags_are_refused_and_change_nothing(bad: str) -> None:
    async with FallbackCache(read_env=False) as cache:
        with pytest.raises(InvalidKeyError):
            await cache.invalidate_tags(bad)
        with pytest.raises(InvalidKeyError):
            await cache.set("k", 1, tags=[bad])
        assert await cache.get("k", default=MISSING) is MISSING
        with pytest.raises(CacheTypeError):
            await cache.set("k", 1, tags="user:1")


@pytest.mark.redis
async def test_round_trips_of_a_tagged_hit(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    async with FallbackCache(redis_url=server.url, read_env=False) as cache:

        @cache.cached(tags=["user:{uid}", "all"])
        async def load(uid: int) -> dict[str, int]:
            return {"uid": uid}

        await load(1)
        await load(1)  # scripts loaded, connections open
        await raw.config_resetstat()
        for _ in range(10):
            assert await load(1) == {"uid": 1}
        decorated = await raw.info("commandstats")
        await raw.config_resetstat()
        for _ in range(10):
            assert await cache.get(load.key(1)) == {"uid": 1}
        plain = await raw.info("commandstats")

    def calls(stats: dict[str, Any], command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    # The decorator knows its tags: the entry and their versions in one script call.
    assert (calls(decorated, "evalsha"), calls(decorated, "mget")) == (10, 0)
    # A plain get learns the tags from the entry: GET, then MGET of their versions.
    assert (calls(plain, "get"), calls(plain, "mget"), calls(plain, "evalsha")) == (10, 10, 0)
