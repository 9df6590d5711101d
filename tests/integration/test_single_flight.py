"""get_or_set under concurrency: one loader run per key, shared outcome, no caching of errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chenu_cache import FallbackCache
from tests.conftest import eventually


class LoaderFailed(Exception):
    pass


async def test_factory_kinds(any_cache: FallbackCache) -> None:
    async def coro_fn() -> str:
        return "async"

    def sync_fn() -> str:
        return "sync"

    def returns_awaitable() -> Any:
        return coro_fn()

    loop = asyncio.get_running_loop()

    def returns_future() -> asyncio.Future[str]:
        fut: asyncio.Future[str] = loop.create_future()
        fut.set_result("future")
        return fut

    assert await any_cache.get_or_set("a", coro_fn) == "async"
    assert await any_cache.get_or_set("b", sync_fn) == "sync"
    assert await any_cache.get_or_set("c", returns_awaitable) == "async"
    assert await any_cache.get_or_set("d", returns_future) == "future"
    assert await any_cache.get_or_set("e", lambda: None) is None
    # Cached None is a hit, not a reason to load again.
    assert await any_cache.get_or_set("e", lambda: pytest.fail("loaded twice")) is None


async def test_loader_error_reaches_every_waiter_and_is_not_cached(
    any_cache: FallbackCache,
) -> None:
    calls = 0
    release = asyncio.Event()

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise LoaderFailed("boom")

    waiters = [asyncio.ensure_future(any_cache.get_or_set("k", failing)) for _ in range(20)]

    async def all_joined() -> bool:
        return (await any_cache.get_statistics()).loader.coalesced == 19

    await eventually(all_joined)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, LoaderFailed) for r in results)
    assert await any_cache.get("k", default="absent") == "absent"
    assert await any_cache.get_or_set("k", lambda: "second try") == "second try"
    assert (await any_cache.get_statistics()).loader.errors == 1


async def test_first_caller_cancelled_others_still_get_the_result(
    any_cache: FallbackCache,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow() -> dict[str, int]:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return {"v": 1}

    first = asyncio.ensure_future(any_cache.get_or_set("k", slow))
    await started.wait()
    others = [asyncio.ensure_future(any_cache.get_or_set("k", slow)) for _ in range(5)]
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await asyncio.gather(*others) == [{"v": 1}] * 5
    with pytest.raises(asyncio.CancelledError):
        await first
    assert calls == 1
    assert await any_cache.get("k") == {"v": 1}


async def test_load_completes_and_is_cached_even_if_every_caller_leaves(
    any_cache: FallbackCache,
) -> None:
    release = asyncio.Event()
    done = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        done.set()
        return 7

    caller = asyncio.ensure_future(any_cache.get_or_set("k", slow))
    await asyncio.sleep(0.01)
    caller.cancel()
    release.set()
    await asyncio.wait_for(done.wait(), 5)

    async def cached() -> bool:
        return await any_cache.get("k") == 7

    await eventually(cached)


async def test_different_keys_load_independently(any_cache: FallbackCache) -> None:
    calls: list[str] = []

    async def load(name: str) -> str:
        calls.append(name)
        await asyncio.sleep(0.01)
        return name

    results = await asyncio.gather(
        *(any_cache.get_or_set(f"k{i % 3}", lambda i=i: load(f"k{i % 3}")) for i in range(30))
    )
    assert sorted(calls) == ["k0", "k1", "k2"]
    assert results[:3] == ["k0", "k1", "k2"]


async def test_every_waiter_gets_its_own_copy(any_cache: FallbackCache) -> None:
    async def load() -> dict[str, list[int]]:
        await asyncio.sleep(0.01)
        return {"items": [1]}

    a, b = await asyncio.gather(any_cache.get_or_set("k", load), any_cache.get_or_set("k", load))
    a["items"].append(2)
    assert b == {"items": [1]}
    assert await any_cache.get("k") == {"items": [1]}


async def test_close_cancels_running_loads(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix)
    await cache.initialize()
    started = asyncio.Event()

    async def never() -> int:
        started.set()
        await asyncio.Event().wait()
        return 1

    caller = asyncio.ensure_future(cache.get_or_set("k", never))
    await started.wait()
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_load_started_before_a_write_does_not_answer_callers_after_it(
    any_cache: FallbackCache,
) -> None:
    """This process wrote v2 while a load of older data (v1) ran; once v2 is gone
    (here: expired), a new caller must not be handed that load's v1."""
    release = asyncio.Event()

    async def old_load() -> str:
        await release.wait()
        return "v1"  # read from the database before the write below

    first = asyncio.create_task(any_cache.get_or_set("k", old_load))

    async def loading() -> bool:
        return any_cache.statistics().loader.calls == 1

    await eventually(loading)
    await any_cache.set("k", "v2", ttl=0.05)
    set_many = asyncio.create_task(any_cache.get_or_set("m", old_load))
    await eventually(lambda: _calls(any_cache, 2))
    await any_cache.set_many({"m": "v2"}, ttl=0.05)

    async def expired() -> bool:
        return await any_cache.get("k") is None and await any_cache.get("m") is None

    await eventually(expired)
    later = asyncio.create_task(any_cache.get_or_set("k", lambda: "v3"))
    later_many = asyncio.create_task(any_cache.get_or_set("m", lambda: "v3"))
    await asyncio.sleep(0)
    release.set()
    assert await later == "v3"
    assert await later_many == "v3"
    assert await first == "v1"  # its own caller gets what it loaded
    assert await set_many == "v1"


async def _calls(cache: FallbackCache, n: int) -> bool:
    return cache.statistics().loader.calls == n
