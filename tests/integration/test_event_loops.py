"""One cache, many event loops: ``asyncio.run()`` per job, threads with their own loops.

Before the fix, the second loop's first call failed inside redis-py with ``RuntimeError:
Event loop is closed``, the cache failed over, and with the probe dead with its loop it
stayed on memory for good. Each test here fails on that: it asserts the cache served
from Redis on every loop, with no failover and no backend error.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import FallbackCache, RedisBackend
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def no_trouble(stats: dict[str, Any]) -> None:
    assert stats["backend"] == "redis", stats
    assert stats["failovers"] == 0, stats
    assert stats["backendErrors"] == 0, stats


async def job(cache: FallbackCache, n: int) -> dict[str, Any]:
    calls = []

    @cache.cached(ttl=60)
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    await cache.set(f"job:{n}", n)
    assert await cache.get(f"job:{n}") == n
    assert await cache.get_or_set(f"load:{n}", lambda: n + 1, ttl=60) == n + 1
    assert await cache.get_many([f"job:{n}", "nope"]) == {f"job:{n}": n}
    assert await square(n) == n * n
    assert await square(n) == n * n
    assert calls == [n]
    await cache.invalidate_pattern(f"load:{n}*")
    assert await cache.get(f"load:{n}") is None
    assert cache.backend.name == "redis"
    return (await cache.get_statistics()).to_dict()


def test_one_asyncio_run_per_job(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(cache.initialize())
        for n in range(4):
            no_trouble(asyncio.run(job(cache, n)))
        asyncio.run(cache.clear())
        asyncio.run(cache.close())
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


def test_a_ready_client_is_copied_for_another_loop(redis_url: str, prefix: str) -> None:
    client = redis_asyncio.Redis.from_url(redis_url)
    cache = FallbackCache(primary=RedisBackend(client=client, prefix=prefix), read_env=False)
    try:
        for n in range(3):
            no_trouble(asyncio.run(job(cache, n)))
        asyncio.run(cache.clear())
        asyncio.run(cache.close())
    finally:
        asyncio.run(client.aclose())


def test_threads_with_their_own_loops(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    results: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    async def many(n: int) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        for round_ in range(20):
            stats = await job(cache, n * 100 + round_)
        return stats

    def worker(n: int) -> None:
        try:
            results[n] = asyncio.run(many(n))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert len(results) == 4
    final = asyncio.run(cache.get_statistics()).to_dict()
    no_trouble(final)
    asyncio.run(cache.clear())
    asyncio.run(cache.close())


def test_an_outage_that_outlives_its_loop_still_ends(server: RedisServer) -> None:
    """The probe dies with the loop of the failover; the next loop's calls restart it."""
    cache = FallbackCache(
        redis_url=server.url,
        prefix="loops:",
        read_env=False,
        operation_timeout=0.1,
        probe_interval=0.05,
        probe_max_interval=0.2,
        recent_window=0,
    )

    async def fail_over() -> None:
        await cache.set("k", "before")
        server.pause()
        await cache.invalidate("k")
        assert cache.backend.name == "memory"

    async def back_on_redis() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while cache.backend.name != "redis":
            assert loop.time() < deadline, "never failed back"
            await cache.get("k")  # calls on the outage path restart the probe
            await asyncio.sleep(0.02)
        assert await cache.get("k") is None  # the invalidation was replayed
        return (await cache.get_statistics()).to_dict()

    try:
        asyncio.run(fail_over())
    finally:
        server.resume()
    stats = asyncio.run(back_on_redis())
    assert (stats["failovers"], stats["failbacks"]) == (1, 1), stats
    asyncio.run(cache.close())
