"""A module-level cache under pytest-asyncio's function-scoped loops (a loop per test).

The way most users write tests: the application's cache is created at import, and each
test runs on a fresh event loop. Every test must be served by Redis, without failover.
"""

from __future__ import annotations

import pytest

from chenu_cache import FallbackCache, cache

pytestmark = pytest.mark.redis

app_cache = FallbackCache(prefix="loops-pytest:", read_env=False)  # as an app module would
calls: list[str] = []


@cache(ttl=60, cache=app_cache)
async def greet(name: str) -> str:
    calls.append(name)
    return f"hello {name}"


async def connected(redis_url: str) -> None:
    if app_cache.primary is None:
        await app_cache.initialize(redis_url)
        await app_cache.clear()
    assert app_cache.backend.name == "redis"


@pytest.mark.parametrize("round_", range(4))
async def test_each_loop_is_served_by_redis(redis_url: str, round_: int) -> None:
    await connected(redis_url)
    await app_cache.set(f"round:{round_}", round_)
    assert await app_cache.get(f"round:{round_}") == round_
    assert await greet("ada") == "hello ada"
    assert calls == ["ada"]  # loaded once, in the first test; a hit on every later loop
    stats = (await app_cache.get_statistics()).to_dict()
    assert stats["backend"] == "redis"
    assert stats["failovers"] == 0
    assert stats["backendErrors"] == 0


async def test_close_at_the_end(redis_url: str) -> None:
    await connected(redis_url)
    await app_cache.clear()
    await app_cache.close()
    assert app_cache.backend.name == "memory"
