"""The default instance, initialize() and the environment."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from chenu_cache import ConfigurationError, FallbackCache, RedisBackend
from chenu_cache._facade import ENV_REDIS_URL
from tests.redis_server import free_port


def test_import_does_no_io_and_reads_no_environment() -> None:
    # A URL that would hang or fail if anything tried it at import time.
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network use at import')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import chenu_cache\n"
        "assert chenu_cache.cache_service.backend.name == 'memory'\n"
        "assert chenu_cache.cache_service.primary is None\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={ENV_REDIS_URL: "redis://10.255.255.1:6379/0", "PATH": ""},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


async def test_works_before_initialize_as_memory() -> None:
    cache = FallbackCache()
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    assert cache.backend.name == "memory"


async def test_initialize_reads_the_environment(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_REDIS_URL, redis_url)
    cache = FallbackCache(prefix=prefix)
    await cache.initialize()
    try:
        assert cache.backend.name == "redis"
        await cache.set("k", 1)
        assert cache.primary is not None
        assert await cache.primary.get("k") is not None
    finally:
        await cache.clear()
        await cache.close()


async def test_argument_wins_over_environment(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_REDIS_URL, f"redis://127.0.0.1:{free_port()}/0")
    cache = FallbackCache(prefix=prefix)
    await cache.initialize(redis_url)
    try:
        assert cache.backend.name == "redis"
    finally:
        await cache.close()


async def test_no_url_anywhere_stays_memory_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV_REDIS_URL, raising=False)
    cache = FallbackCache()
    with caplog.at_level(logging.INFO, logger="chenu_cache"):
        await cache.initialize()
        await cache.initialize()
    assert cache.backend.name == "memory"
    said = [r for r in caplog.records if "memory only" in r.getMessage()]
    assert len(said) == 1


async def test_read_env_false_ignores_the_environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_REDIS_URL, redis_url)
    cache = FallbackCache(read_env=False)
    await cache.initialize()
    assert cache.backend.name == "memory"


async def test_unreachable_redis_at_start_serves_from_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = FallbackCache(redis_url=f"redis://127.0.0.1:{free_port()}/0", probe_interval=60)
    with caplog.at_level(logging.WARNING, logger="chenu_cache"):
        await cache.initialize()  # must not raise
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        await cache.get("other")
    assert cache.backend.name == "memory"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    await cache.close()


async def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        await FallbackCache().initialize("http://not-redis")
    with pytest.raises(ConfigurationError):
        FallbackCache(redis_url="nope://x")


def test_url_and_primary_together_are_refused() -> None:
    from chenu_cache import MemoryBackend

    with pytest.raises(ConfigurationError):
        FallbackCache(redis_url="redis://127.0.0.1:1/0", primary=MemoryBackend())


async def test_close_then_initialize_again(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix)
    await cache.initialize()
    await cache.set("k", 1)
    await cache.close()
    await cache.initialize()
    try:
        assert cache.backend.name == "redis"
        assert await cache.get("k") == 1
    finally:
        await cache.clear()
        await cache.close()


async def test_statistics_shape(redis_url: str, prefix: str) -> None:
    async with FallbackCache(redis_url=redis_url, prefix=prefix) as cache:
        await cache.set("1", "a", namespace="user")
        await cache.get("1", namespace="user")
        await cache.get("2", namespace="user")
        await cache.get("plain")
        stats = await cache.get_statistics()
        shape = stats.to_dict()
        assert shape["backend"] == "redis"
        assert shape["redis"]["connected"] is True
        assert isinstance(shape["redis"]["usedMemory"], str)
        assert shape["redis"]["connectedClients"] >= 1
        assert shape["redis"]["hitRate"] == pytest.approx(1 / 3, abs=0.01)
        assert shape["namespaces"]["user"] == {"hits": 1, "misses": 1, "hitRate": 0.5}
        assert shape["namespaces"]["(none)"]["misses"] == 1
        assert shape["failovers"] == 0
        assert shape["failbacks"] == 0
        assert shape["breakerState"] == "closed"
        assert set(shape["memory"]) >= {"hits", "misses", "size", "hitRate", "evictions"}
        import json

        json.dumps(shape)  # JSON-serialisable as the admin route will serve it
        await cache.clear()


def test_max_connections_reaches_the_redis_backend() -> None:
    cache = FallbackCache(redis_url="redis://127.0.0.1:1/0", max_connections=7, read_env=False)
    assert isinstance(cache.primary, RedisBackend)
    assert cache.primary.max_connections == 7
