"""Consistency fences (SPEC §12): a load overtaken by an invalidation stores nothing.

Two caches on one real Redis stand in for two processes; one test runs the loader in
a separate process. Loaders wait on events the test sets, so every interleaving here is
forced, never timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import MISSING, FallbackCache
from tests.conftest import DEPLOYMENTS, FakeClock, eventually
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]

INVALIDATIONS: dict[str, Callable[[FallbackCache], Awaitable[object]]] = {
    "key": lambda c: c.invalidate("user:1"),
    "delete_many": lambda c: c.delete_many(["user:1", "user:2"]),
    "pattern": lambda c: c.invalidate_pattern("user:*"),
    "namespace": lambda c: c.invalidate_namespace("user"),
    "clear": lambda c: c.clear(),
}


class SlowLoader:
    """A loader that tells when it started and returns only when released."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.value


async def overtaken(
    loading: FallbackCache,
    other: FallbackCache,
    change: Callable[[FallbackCache], Awaitable[object]],
) -> Any:
    """Start a load in ``loading``, make ``change`` in ``other`` meanwhile, finish the load."""
    loader = SlowLoader({"version": 1})
    task = asyncio.create_task(loading.get_or_set("user:1", loader, ttl=60))
    await asyncio.wait_for(loader.started.wait(), 5)
    await change(other)
    loader.release.set()
    return await asyncio.wait_for(task, 5)


@pytest.fixture(params=list(DEPLOYMENTS))
async def two_caches(
    request: pytest.FixtureRequest, prefix: str
) -> AsyncIterator[tuple[FallbackCache, FallbackCache]]:
    """Two caches on one real Redis, Cluster or Sentinel: two processes' views."""
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
@pytest.mark.parametrize("how", list(INVALIDATIONS))
async def test_a_load_overtaken_by_another_process_invalidation_stores_nothing(
    two_caches: tuple[FallbackCache, FallbackCache], how: str
) -> None:
    loading, other = two_caches
    assert await overtaken(loading, other, INVALIDATIONS[how]) == {"version": 1}  # its caller
    assert await other.get("user:1", default=MISSING) is MISSING  # later readers: a miss
    assert await loading.get("user:1", default=MISSING) is MISSING
    assert (await loading.get_statistics()).loader.fenced == 1
    # The next load starts after the invalidation: it stores.
    assert await other.get_or_set("user:1", lambda: {"version": 2}) == {"version": 2}
    assert await loading.get("user:1") == {"version": 2}


@pytest.mark.redis
async def test_a_set_made_during_a_load_wins(
    two_caches: tuple[FallbackCache, FallbackCache],
) -> None:
    loading, other = two_caches

    async def write(cache: FallbackCache) -> None:
        await cache.set("user:1", {"version": 2}, ttl=60)

    assert await overtaken(loading, other, write) == {"version": 1}
    assert await loading.get("user:1") == {"version": 2}
    assert await other.get("user:1") == {"version": 2}


@pytest.mark.redis
async def test_a_load_nothing_overtook_stores_and_costs_one_round_trip_more(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    async with FallbackCache(redis_url=server.url, read_env=False) as cache:
        await cache.get_or_set("warm", lambda: 0)  # scripts loaded, connections open
        await raw.config_resetstat()
        assert await cache.get_or_set("user:1", lambda: {"version": 1}) == {"version": 1}
        miss = await raw.info("commandstats")
        await raw.config_resetstat()
        for _ in range(20):
            assert await cache.get_or_set("user:1", lambda: {"version": 0}) == {"version": 1}
        hits = await raw.info("commandstats")

    def calls(stats: dict[str, Any], command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    # A miss: GET, then the claim and the fenced write (two EVALSHA) where it was GET +
    # SET. (commandstats also counts what the scripts run: a GET in each, a SET in each.)
    assert (calls(miss, "evalsha"), calls(miss, "get"), calls(miss, "set")) == (2, 1 + 2, 2)
    # A hit costs nothing more than before: one GET each, no script.
    assert (calls(hits, "get"), calls(hits, "evalsha")) == (20, 0)


async def test_in_one_process_on_memory(prefix: str) -> None:
    async with FallbackCache(read_env=False) as cache:
        for how, change in INVALIDATIONS.items():
            assert await overtaken(cache, cache, change) == {"version": 1}, how
            assert await cache.get("user:1", default=MISSING) is MISSING, how
        assert (await cache.get_statistics()).loader.fenced == len(INVALIDATIONS)


async def test_a_caller_after_the_invalidation_does_not_join_the_old_load() -> None:
    async with FallbackCache(read_env=False) as cache:
        old = SlowLoader({"version": 1})
        first = asyncio.create_task(cache.get_or_set("user:1", old))
        await asyncio.wait_for(old.started.wait(), 5)
        await cache.invalidate("user:1")
        # Started after the invalidation: a load of its own, which stores.
        assert await cache.get_or_set("user:1", lambda: {"version": 2}) == {"version": 2}
        old.release.set()
        assert await first == {"version": 1}  # who waited gets what they waited for
        assert await cache.get("user:1") == {"version": 2}


async def test_a_failing_loader_gives_its_claim_up(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    async with FallbackCache(redis_url=server.url, prefix="p:", read_env=False) as cache:

        def boom() -> None:
            raise LookupError("no such user")

        with pytest.raises(LookupError):
            await cache.get_or_set("user:1", boom)
        assert await raw.exists("p:user:1") == 0  # no claim left behind
        # cache_if refusing the value gives the claim up too.
        assert await cache.get_or_set("user:1", lambda: None, cache_if=bool) is None
        assert await raw.exists("p:user:1") == 0


async def test_a_loader_that_outlives_its_lease_stores_nothing(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    async with FallbackCache(
        redis_url=server.url, prefix="p:", lease_ttl=0.05, read_env=False
    ) as cache:
        loader = SlowLoader({"version": 1})
        task = asyncio.create_task(cache.get_or_set("user:1", loader))
        await asyncio.wait_for(loader.started.wait(), 5)

        async def lapsed() -> bool:
            return await raw.exists("p:user:1") == 0

        await eventually(lapsed)
        loader.release.set()
        assert await task == {"version": 1}
        assert await cache.get("user:1", default=MISSING) is MISSING
        assert (await cache.get_statistics()).loader.fenced == 1


@pytest.mark.redis
async def test_a_refresh_overtaken_by_an_invalidation_stores_nothing(
    redis_url: str, prefix: str
) -> None:
    clock = FakeClock(1_700_000_000.0)  # the freshness options' wall clock
    loading = FallbackCache(redis_url=redis_url, prefix=prefix, clock=clock, read_env=False)
    other = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    async with loading, other:
        await loading.get_or_set("user:1", lambda: {"version": 1}, ttl=60, refresh_after=1)
        clock.advance(2)  # due: the next hit is served and starts a background refresh
        refresh = SlowLoader({"version": 2})
        hit = await loading.get_or_set("user:1", refresh, ttl=60, refresh_after=1)
        assert hit == {"version": 1}
        await asyncio.wait_for(refresh.started.wait(), 5)
        await other.invalidate("user:1")
        refresh.release.set()

        async def fenced() -> bool:
            return (await loading.get_statistics()).loader.fenced == 1

        await eventually(fenced)
        assert await other.get("user:1", default=MISSING) is MISSING
        await other.clear()


async def test_during_an_outage_on_the_memory_tier(server: RedisServer) -> None:
    async with FallbackCache(
        redis_url=server.url, operation_timeout=0.25, probe_interval=60, read_env=False
    ) as cache:
        server.kill()
        await cache.get("anything")  # fails over
        assert cache.backend.name == "memory"
        for how, change in INVALIDATIONS.items():
            assert await overtaken(cache, cache, change) == {"version": 1}, how
            assert await cache.get("user:1", default=MISSING) is MISSING, how
        # Nothing overtook this one: stored on memory while Redis is away.
        assert await cache.get_or_set("user:2", lambda: "kept") == "kept"
        assert await cache.get("user:2") == "kept"


def _worker(url: str, prefix: str, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fence_worker", url, prefix, key],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.redis
@pytest.mark.parametrize("how", ["key", "pattern", "namespace", "clear"])
async def test_a_load_in_another_process_overtaken_by_an_invalidation_here(
    redis_url: str, prefix: str, how: str
) -> None:
    raw = redis_asyncio.Redis.from_url(redis_url)
    worker = _worker(redis_url, prefix, "user:1")
    try:
        async with FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False) as here:

            async def loading() -> bool:
                return await raw.get(f"{prefix}test:loading") == b"1"

            await eventually(loading, timeout=30)
            await INVALIDATIONS[how](here)  # removes the worker's claim
            await raw.rpush(f"{prefix}test:go", "1")
            out, err = await asyncio.to_thread(worker.communicate, timeout=30)
            assert worker.returncode == 0, err
            assert json.loads(out)["pid"] == worker.pid  # its caller got its value
            assert await here.get("user:1", default=MISSING) is MISSING
            await here.clear()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
        async for key in raw.scan_iter(match=f"{prefix}*"):
            await raw.delete(key)
        await raw.aclose()
