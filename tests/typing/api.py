"""Checked by `mypy --strict tests/typing`, never run: the public API's types as users see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from typing_extensions import assert_type

from chenu_cache import (
    MISSING,
    NO_EXPIRY,
    Backend,
    CacheStatistics,
    FallbackCache,
    MemoryBackend,
    NearCacheOptions,
    RedisBackend,
    cache,
    cache_service,
)


@cache(ttl=300, namespace="user")
async def get_user(user_id: str, verbose: bool = False) -> dict[str, int]:
    return {"id": int(user_id)}


@cache
async def bare(x: int) -> list[str]:
    return [str(x)]


# SPEC's own example: a lambda's parameters are untyped, which pyright's strict mode
# reports against the user's code, not against the decorator's types.
@cache(key_builder=lambda user_id, **kw: f"user:{user_id}", ttl=timedelta(minutes=5))  # pyright: ignore[reportUnknownArgumentType, reportUnknownLambdaType]
async def profile(user_id: str, include_stats: bool = False) -> str:
    return user_id


class Service:
    @cache_service.cached(namespace="user")
    async def lookup(self, user_id: str) -> float:
        return 1.0


async def usage() -> None:
    assert_type(await get_user("1"), dict[str, int])
    assert_type(await get_user("1", verbose=True), dict[str, int])
    assert_type(await bare(1), list[str])
    assert_type(await profile("1", include_stats=True), str)
    assert_type(await get_user.invalidate("1"), bool)
    assert_type(get_user.key("1"), str)
    assert_type(await Service().lookup("1"), float)
    assert_type(await Service().lookup.invalidate("1"), bool)

    await get_user(1)  # type: ignore[arg-type]
    await get_user("1", nope=True)  # type: ignore[call-arg]
    await Service().lookup(2)  # type: ignore[arg-type]

    memory: Backend = MemoryBackend()
    redis: Backend = RedisBackend("redis://127.0.0.1:6379/0")
    composed = FallbackCache(primary=redis, fallback=memory)
    async with composed as c:
        assert_type(c, FallbackCache)
        value: Any = await c.get("k", default=MISSING)
        await c.set("k", value, ttl=NO_EXPIRY)
        await c.set("k", value, ttl=timedelta(seconds=3))
        await c.set("k", value, ttl=1.5)
        assert_type(await c.get_statistics(), CacheStatistics)
        assert_type(await c.invalidate_pattern("user:*"), int)
        assert_type(await c.get_many(["a"]), dict[str, Any])

    near = FallbackCache(
        "redis://127.0.0.1:6379/0",
        near_cache=NearCacheOptions(max_entries=1_000, namespaces=["user"], heartbeat=0.5),
    )
    assert_type(near.statistics().near_cache.hits, int)
    assert_type(near.statistics().near_cache.tracking, bool)
    FallbackCache(near_cache=True)
    FallbackCache(near_cache=1)  # type: ignore[arg-type]


@dataclass
class User:
    id: int
    seen: datetime


@cache(ttl=60, cache_if=lambda user: user is not None)  # pyright: ignore[reportUnknownLambdaType]
async def find_user(user_id: int) -> User | None:
    return None


@cache(type=tuple[int, str], tags=["pairs"])
async def pair() -> tuple[int, str]:
    return (1, "a")


async def typed_values(c: FallbackCache) -> None:
    assert_type(await c.get("u", type=User), User | None)
    assert_type(await c.get("u", default=0, type=User), User | int)
    assert_type(await c.get("u", namespace="user", type=list[User]), list[User] | None)
    assert_type(await c.get("u"), Any)
    assert_type(await c.get_many(["u"], type=User), dict[str, User])
    assert_type(await c.get_or_set("u", lambda: User(1, datetime.now()), type=User), User)
    assert_type(await c.get_or_set("u", lambda: 1, cache_if=bool, lock=True), Any)
    assert_type(await find_user(1), User | None)
    assert_type(await pair(), tuple[int, str])
    await c.set("u", 1, tags=["user:1"])
    assert_type(await c.get_or_set("u", lambda: 1, tags=["user:1"], type=int), int)
    assert_type(await c.invalidate_tags("user:1", "org:2"), None)
    await c.get_or_set("u", lambda: 1, nope=True)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
