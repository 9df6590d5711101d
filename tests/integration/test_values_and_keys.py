"""Values (SPEC §4) and keys, namespaces and TTLs (SPEC §3) through FallbackCache."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from chenu_cache import (
    MISSING,
    NO_EXPIRY,
    CacheError,
    FallbackCache,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidPatternError,
    InvalidTTLError,
    SerializationError,
    ValueTooLargeError,
)


async def test_none_is_cached_and_told_apart_from_a_miss(any_cache: FallbackCache) -> None:
    await any_cache.set("k", None)
    assert await any_cache.get("k", default=MISSING) is None
    assert await any_cache.get("absent", default=MISSING) is MISSING
    assert await any_cache.exists("k")
    assert not await any_cache.exists("absent")


async def test_returned_values_are_fresh_copies(any_cache: FallbackCache) -> None:
    value = {"list": [1, 2], "nested": {"a": 1}}
    await any_cache.set("k", value)
    value["list"].append(99)  # the caller's own object, mutated after set
    first = await any_cache.get("k")
    first["list"].append(3)
    first["nested"]["a"] = 2
    assert await any_cache.get("k") == {"list": [1, 2], "nested": {"a": 1}}


async def test_types_are_what_redis_would_give_on_every_tier(any_cache: FallbackCache) -> None:
    await any_cache.set("k", {"t": (1, 2), 3: "int key"})
    got = await any_cache.get("k")
    assert got == {"t": [1, 2], "3": "int key"}
    loaded = await any_cache.get_or_set("k2", lambda: (1, 2))
    assert loaded == [1, 2]  # even the call that ran the loader gets the stored form


async def test_unencodable_value_raises_and_writes_nothing(any_cache: FallbackCache) -> None:
    await any_cache.set("k", "old")
    with pytest.raises(SerializationError, match="complex"):
        await any_cache.set("k", complex(1, 2))
    assert await any_cache.get("k") == "old"
    with pytest.raises(SerializationError):
        await any_cache.set_many({"a": 1, "b": object()})
    assert await any_cache.get_many(["a", "b"]) == {}
    with pytest.raises(SerializationError):
        await any_cache.get_or_set("c", lambda: object())
    assert await any_cache.get("c", default=MISSING) is MISSING


async def test_value_size_limit(redis_url: str, prefix: str) -> None:
    async with FallbackCache(redis_url=redis_url, prefix=prefix, max_value_size=100) as cache:
        with pytest.raises(ValueTooLargeError):
            await cache.set("k", "x" * 200)
        assert await cache.get("k", default=MISSING) is MISSING
        await cache.clear()


async def test_compression_round_trips(redis_url: str, prefix: str) -> None:
    async with FallbackCache(redis_url=redis_url, prefix=prefix, compress_threshold=64) as cache:
        big = {"rows": ["same row"] * 500}
        await cache.set("k", big)
        assert await cache.get("k") == big
        assert cache.primary is not None
        raw = await cache.primary.get("k")
        assert raw is not None
        assert len(raw) < 1000
        await cache.clear()


async def test_namespace_and_prefix_name_the_same_entry(any_cache: FallbackCache) -> None:
    await any_cache.set("123", "a", namespace="user")
    assert await any_cache.get("user:123") == "a"
    await any_cache.set("user:456", "b")
    assert await any_cache.get("456", namespace="user") == "b"
    assert await any_cache.invalidate_namespace("user") == 2


async def test_ttl_resolution(any_cache: FallbackCache) -> None:
    async def ttl(key: str) -> float:
        remaining = await any_cache.ttl(key)
        assert remaining is not None
        return remaining

    await any_cache.set("1", 1, namespace="governance")
    assert 55 < await ttl("governance:1") <= 60
    await any_cache.set("governance:2", 1)  # the namespace is read from the key too
    assert 55 < await ttl("governance:2") <= 60
    await any_cache.set("3", 1, namespace="governance", ttl=5)
    assert 0 < await ttl("governance:3") <= 5
    await any_cache.set("4", 1, namespace="unknown-ns")
    assert 3590 < await ttl("unknown-ns:4") <= 3600
    await any_cache.set("plain", 1, ttl=timedelta(minutes=2))
    assert 115 < await ttl("plain") <= 120
    await any_cache.set("forever", 1, ttl=NO_EXPIRY)
    assert await ttl("forever") == math.inf
    await any_cache.set("fraction", 1, ttl=0.5)
    assert 0 < await ttl("fraction") <= 0.5


async def test_configured_namespaces_and_default_ttl(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(
        redis_url=redis_url,
        prefix=prefix,
        default_ttl=30,
        namespaces={"report": timedelta(hours=2), "user": 10, "static": NO_EXPIRY},
    )
    async with cache:
        await cache.set("a", 1, namespace="report")
        await cache.set("b", 1, namespace="user")
        await cache.set("c", 1)
        await cache.set("d", 1, namespace="static")
        assert 7190 < (await cache.ttl("report:a") or 0) <= 7200
        assert 0 < (await cache.ttl("user:b") or 0) <= 10
        assert 25 < (await cache.ttl("c") or 0) <= 30
        assert await cache.ttl("static:d") == math.inf
        assert cache.namespaces.ttl_for("agent") == 1800  # defaults are kept
        await cache.clear()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.get(""), InvalidKeyError),
        (lambda c: c.get("has space"), InvalidKeyError),
        (lambda c: c.get("tab\tkey"), InvalidKeyError),
        (lambda c: c.get("x" * 1025), InvalidKeyError),
        (lambda c: c.set("", 1), InvalidKeyError),
        (lambda c: c.get("k", namespace="Upper"), InvalidNamespaceError),
        (lambda c: c.get("k", namespace="a*"), InvalidNamespaceError),
        (lambda c: c.get("k", namespace=""), InvalidNamespaceError),
        (lambda c: c.get("", namespace="user"), InvalidKeyError),
        (lambda c: c.invalidate_namespace("x" * 65), InvalidNamespaceError),
        (lambda c: c.invalidate_pattern(""), InvalidPatternError),
        (lambda c: c.invalidate_pattern("user:[a"), InvalidPatternError),
        (lambda c: c.set("k", 1, ttl=-1), InvalidTTLError),
        (lambda c: c.set("k", 1, ttl=0), InvalidTTLError),
        (lambda c: c.set("k", 1, ttl=float("inf")), InvalidTTLError),
        (lambda c: c.set("k", 1, ttl=float("nan")), InvalidTTLError),
        (lambda c: c.set("k", 1, ttl=10**12), InvalidTTLError),
        (lambda c: c.set("k", 1, ttl=timedelta(seconds=-5)), InvalidTTLError),
        (lambda c: c.get_or_set("k", lambda: 1, ttl=-1), InvalidTTLError),
    ],
)
async def test_bad_input_is_a_typed_value_error(
    any_cache: FallbackCache, call: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        await call(any_cache)
    assert isinstance(info.value, CacheError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get(123),
        lambda c: c.get(None),
        lambda c: c.set("k", 1, ttl="10"),
        lambda c: c.set("k", 1, ttl=True),
        lambda c: c.get("k", namespace=1),
        lambda c: c.invalidate_pattern(b"user:*"),
    ],
)
async def test_wrong_types_are_a_typed_type_error(any_cache: FallbackCache, call: Any) -> None:
    with pytest.raises(CacheError) as info:
        await call(any_cache)
    assert isinstance(info.value, TypeError)


async def test_bad_input_loses_nothing(any_cache: FallbackCache) -> None:
    await any_cache.set("k", "kept")
    with pytest.raises(InvalidTTLError):
        await any_cache.set("k", "new", ttl=-1)
    assert await any_cache.get("k") == "kept"


async def test_scan_lists_logical_keys(any_cache: FallbackCache) -> None:
    await any_cache.set_many({f"user:{i}": i for i in range(30)})
    keys: list[str] = []
    cursor = 0
    while True:
        cursor, page = await any_cache.scan("user:*", cursor, 7)
        keys.extend(page)
        if cursor == 0:
            break
    assert sorted(keys) == sorted(f"user:{i}" for i in range(30))


async def test_clear_reaches_only_this_prefix(redis_url: str, prefix: str) -> None:
    other = FallbackCache(redis_url=redis_url, prefix=prefix + "other:")
    mine = FallbackCache(redis_url=redis_url, prefix=prefix + "mine:")
    async with other, mine:
        await other.set("k", "theirs")
        await mine.set("k", "mine")
        assert await mine.clear() == 1
        assert await other.get("k") == "theirs"
        await other.clear()
