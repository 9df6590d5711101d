"""Shared fixtures: a real redis-server for every test that needs one.

The server comes from, in order: ``CHENU_CACHE_TEST_REDIS_URL``; a throw-away
``redis-server`` started here on a free loopback port; the local server on 6379.
With none of them, tests that need Redis skip, except under ``CI=true``, where they
fail: CI must never pass by skipping the real-Redis runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlparse

import pytest
import redis.asyncio

from chenu_cache import FallbackCache, MemoryBackend, RedisBackend
from tests.deployments import Cluster, SentinelSetup, cli_binary
from tests.redis_server import RedisServer, ping, redis_server_binary

REDIS_URL_ENV = "CHENU_CACHE_TEST_REDIS_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    return ping(parsed.hostname or "127.0.0.1", parsed.port or 6379, timeout=1.0)


def _no_redis(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true and no Redis for the tests: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server_binary_path() -> str:
    binary = redis_server_binary()
    if binary is None:
        _no_redis("the redis-server binary is not on PATH")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    env_url = os.environ.get(REDIS_URL_ENV)
    if env_url:
        if not _reachable(env_url):
            _no_redis(f"{REDIS_URL_ENV}={env_url} does not answer PING")
        yield env_url
        return
    binary = redis_server_binary()
    if binary is not None:
        with RedisServer(binary) as server:
            yield server.url
        return
    fallback = "redis://127.0.0.1:6379/0"
    if _reachable(fallback):
        yield fallback
        return
    _no_redis("no redis-server binary and nothing on 127.0.0.1:6379")


@pytest.fixture(scope="session")
def cluster_url(redis_server_binary_path: str) -> Iterator[str]:
    """A 3-primary Redis Cluster started for the session."""
    if cli_binary(redis_server_binary_path) is None:
        _no_redis("redis-cli is needed to create a cluster")
    cluster = Cluster(redis_server_binary_path)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def sentinel_url(redis_server_binary_path: str) -> Iterator[str]:
    """A primary, a replica and three sentinels started for the session."""
    setup = SentinelSetup(redis_server_binary_path)
    try:
        setup.start()
        yield setup.url
    finally:
        setup.close()


DEPLOYMENTS = {"redis": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}


def pytest_report_header(config: pytest.Config) -> str:
    binary = redis_server_binary()
    if binary is None:
        return "redis server for the tests: none found"
    import subprocess

    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return f"redis server for the tests: {binary} ({version.stdout.strip()})"


@pytest.fixture
def server(redis_server_binary_path: str) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill, pause or reconfigure; always stopped."""
    srv = RedisServer(redis_server_binary_path, extra_args=["--enable-debug-command", "yes"])
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain redis-py client to ``server``, for seeding and checking behind the cache."""
    client = redis.asyncio.Redis.from_url(server.url, socket_timeout=10)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):  # the test may have killed the server
            await client.aclose()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def redis_backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_url, prefix=prefix)
    try:
        yield backend
    finally:
        try:
            await backend.clear()
        finally:
            await backend.close()


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Wait until ``check()`` is true, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def any_cache(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[FallbackCache]:
    """A FallbackCache on memory only, then on a real Redis, a Cluster and Sentinel."""
    if request.param == "memory":
        cache = FallbackCache(read_env=False)
    else:
        url: str = request.getfixturevalue(DEPLOYMENTS[request.param])
        # These tests check behaviour, not timeouts: a loaded CI machine stalling
        # one command past the 250 ms default must not send them to memory.
        cache = FallbackCache(redis_url=url, prefix=prefix, operation_timeout=2.0)
    await cache.initialize()
    assert cache.backend.name == ("memory" if request.param == "memory" else "redis")
    try:
        yield cache
    finally:
        await cache.clear()
        await cache.close()
