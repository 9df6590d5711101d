"""What RedisBackend adds to the contract, against a real redis-server."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    RedisBackend,
)
from tests.redis_server import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
async def raw(redis_url: str) -> redis_asyncio.Redis:
    client = redis_asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_physical_keys_carry_the_prefix(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await redis_backend.set("user:1", b"v", 60)
    assert await raw.get(f"{prefix}user:1") == b"v"
    assert 59_000 < await raw.pttl(f"{prefix}user:1") <= 60_000
    assert await raw.get("user:1") is None


async def test_clear_and_patterns_never_touch_foreign_keys(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis, prefix: str
) -> None:
    foreign = ["user:1", f"x{prefix}user:1", prefix.rstrip(":"), "other:thing"]
    try:
        for key in foreign:
            await raw.set(key, b"theirs")
        await redis_backend.set_many([("user:1", b"ours", None), ("user:2", b"ours", None)])
        assert await redis_backend.delete_pattern("*") == 2
        await redis_backend.set("k", b"ours", None)
        assert await redis_backend.clear() == 1
        assert await raw.mget(foreign) == [b"theirs"] * len(foreign)
    finally:
        await raw.delete(*foreign)


async def test_prefix_with_glob_characters_is_matched_literally(
    redis_url: str, raw: redis_asyncio.Redis
) -> None:
    odd = RedisBackend(redis_url, prefix="odd[1]*?:")
    try:
        await raw.set("odd1XY:k", b"theirs")  # would match an unescaped prefix
        await odd.set("k", b"ours", None)
        assert await odd.scan("*") == (0, ["k"])
        assert await odd.clear() == 1
        assert await raw.get("odd1XY:k") == b"theirs"
    finally:
        await raw.delete("odd1XY:k")
        await odd.close()


async def test_never_sends_keys_or_flushdb(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis
) -> None:
    await raw.config_resetstat()
    await redis_backend.set_many([(f"k{i}", b"v", None) for i in range(50)])
    await redis_backend.scan("*")
    await redis_backend.delete_pattern("k1*")
    await redis_backend.clear()
    stats = await raw.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert "cmdstat_flushdb" not in stats
    assert "cmdstat_flushall" not in stats
    assert "cmdstat_unlink" in stats
    assert "cmdstat_scan" in stats


async def test_many_concurrent_callers_wait_for_a_connection(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, max_connections=4)
    try:
        await backend.set("k", b"v", None)
        results = await asyncio.gather(*(backend.get("k") for _ in range(200)))
        assert results == [b"v"] * 200
        writes = [backend.set(f"w{i}", b"v", 60) for i in range(200)]
        await asyncio.gather(*writes)
        assert len(await backend.get_many([f"w{i}" for i in range(200)])) == 200
    finally:
        await backend.clear()
        await backend.close()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_both_resp_protocols(redis_url: str, prefix: str, protocol: int) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, protocol=protocol)
    try:
        await backend.set("k", b"v", 10)
        assert await backend.get("k") == b"v"
        assert await backend.scan("*") == (0, ["k"])
        ttl = await backend.ttl("k")
        assert ttl is not None
        assert 0 < ttl <= 10
        stats = await backend.stats()
        assert isinstance(stats.details["used_memory_human"], str)
        assert int(str(stats.details["connected_clients"])) >= 1
    finally:
        await backend.clear()
        await backend.close()


async def test_accepts_a_ready_client(redis_url: str, prefix: str) -> None:
    client = redis_asyncio.Redis.from_url(redis_url)
    backend = RedisBackend(client=client, prefix=prefix)
    try:
        await backend.set("k", b"v", None)
        assert await backend.get("k") == b"v"
        await backend.clear()
        await backend.close()  # not ours to close
        assert await client.ping()
    finally:
        await client.aclose()


async def test_refuses_a_decoding_client(redis_url: str) -> None:
    client = redis_asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode"):
            RedisBackend(client=client)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("ftp://nowhere",), {}),
        ((), {}),
        (("redis://127.0.0.1:1",), {"prefix": ""}),
        (("redis://127.0.0.1:1",), {"prefix": "has space:"}),
        (("redis://127.0.0.1:1",), {"operation_timeout": 0}),
    ],
)
def test_refuses_bad_configuration(args: tuple[str, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend(*args, **kwargs)  # type: ignore[arg-type]


async def test_closed_port_raises_unavailable() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(BackendUnavailableError):
            await backend.get("k")
        with pytest.raises(BackendUnavailableError):
            await backend.set("k", b"v", None)
        with pytest.raises(BackendUnavailableError):
            await backend.ping()
    finally:
        await backend.close()


async def test_hung_server_raises_timeout(redis_server_binary_path: str) -> None:
    from tests.redis_server import RedisServer

    with RedisServer(redis_server_binary_path) as server:
        backend = RedisBackend(server.url, operation_timeout=0.1)
        try:
            await backend.set("k", b"v", None)
            server.pause()
            try:
                with pytest.raises(BackendTimeoutError):
                    await backend.get("k")
            finally:
                server.resume()
        finally:
            await backend.close()


async def test_no_expiry_entry_has_no_ttl(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await redis_backend.set("k", b"v", None)
    assert await raw.pttl(f"{prefix}k") == -1
    assert await redis_backend.ttl("k") == math.inf


async def test_concurrent_gets_become_mget_and_a_lone_get_stays_get(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis
) -> None:
    await redis_backend.set_many([(f"k{i}", str(i).encode(), None) for i in range(200)])
    await raw.config_resetstat()
    for i in range(10):
        assert await redis_backend.get(f"k{i}") == str(i).encode()
    stats = await raw.info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 10
    assert "cmdstat_mget" not in stats
    await raw.config_resetstat()
    results = await asyncio.gather(*(redis_backend.get(f"k{i}") for i in range(200)))
    assert results == [str(i).encode() for i in range(200)]
    stats = await raw.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] >= 1
    assert stats["cmdstat_get"]["calls"] + stats["cmdstat_mget"]["calls"] < 20


async def test_concurrent_sets_become_one_pipeline(
    redis_backend: RedisBackend, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await asyncio.gather(
        *(redis_backend.set(f"s{i}", b"v", 60 if i % 2 else None) for i in range(100))
    )
    assert await redis_backend.get_many([f"s{i}" for i in range(100)]) == [b"v"] * 100
    assert await raw.pttl(f"{prefix}s1") > 0
    assert await raw.pttl(f"{prefix}s0") == -1


async def test_batching_can_be_turned_off(
    redis_url: str, prefix: str, raw: redis_asyncio.Redis
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, batching=False)
    try:
        await raw.config_resetstat()
        await asyncio.gather(*(backend.get(f"k{i}") for i in range(50)))
        stats = await raw.info("commandstats")
        assert stats["cmdstat_get"]["calls"] == 50
        assert "cmdstat_mget" not in stats
    finally:
        await backend.close()
