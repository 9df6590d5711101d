"""Failover and failback against a real redis-server that is killed, paused, cut off, slowed.

Every test starts its own server (and proxy) and stops it in a ``finally``; waits are
conditions with deadlines, never fixed sleeps. What they hold the cache to:

- no exception reaches a caller, whatever Redis does;
- once the circuit is open, calls cost memory speed (p99 far under the op timeout);
- when Redis answers again the cache switches back;
- after failback, nothing written, deleted, or pattern/namespace-invalidated during the
  outage returns its pre-outage value, including when the journal overflowed.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import MISSING, FallbackCache, RedisBackend, Transition
from tests.conftest import eventually
from tests.redis_server import RedisServer, free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

OP_TIMEOUT = 0.1
PREFIX = "fault:"


def make_cache(url: str, **options: Any) -> FallbackCache:
    # The recent window would also replay what each test seeds right before its fault;
    # these tests check the exact journal, and one test checks the window itself.
    options.setdefault("recent_window", 0)
    options.setdefault("operation_timeout", OP_TIMEOUT)
    options.setdefault("probe_interval", 0.05)
    options.setdefault("probe_max_interval", 0.3)
    return FallbackCache(redis_url=url, prefix=PREFIX, read_env=False, **options)


async def on_backend(cache: FallbackCache, name: str, timeout: float = 10.0) -> None:
    async def check() -> bool:
        return cache.backend.name == name

    await eventually(check, timeout=timeout)


async def seed(raw: redis_asyncio.Redis, cache: FallbackCache, values: dict[str, Any]) -> None:
    """Write pre-outage values through the cache, and check they reached Redis."""
    await cache.set_many(values, ttl=3600)
    stored = await raw.mget([PREFIX + k for k in values])
    assert all(v is not None for v in stored)


async def exercise(cache: FallbackCache) -> None:
    """Every kind of call a user makes; none may raise, whatever Redis is doing."""
    await cache.set("x", 1)
    await cache.get("x")
    await cache.get_or_set("y", lambda: 2)
    await cache.get_many(["x", "y"])
    await cache.set_many({"z1": 1, "z2": 2})
    await cache.delete_many(["z1"])
    await cache.invalidate("z2")
    await cache.invalidate_pattern("nomatch:*")
    await cache.ttl("x")
    await cache.exists("x")
    await cache.scan("*")
    await cache.get_statistics()

    @cache.cached(ttl=60)
    async def decorated(n: int) -> int:
        return n

    await decorated(1)
    await decorated.invalidate(1)


async def latencies(cache: FallbackCache, n: int = 300) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        await cache.get(f"lat:{i % 10}")
        out.append(time.perf_counter() - start)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_killed_and_restarted(server: RedisServer) -> None:
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        assert cache.backend.name == "redis"
        await cache.set("before", "v")
        server.kill()
        await exercise(cache)  # the first failing call fails over; none raises
        assert cache.backend.name == "memory"
        lat = await latencies(cache)
        assert p99(lat) < OP_TIMEOUT / 2, f"p99 {p99(lat):.4f}s while the circuit is open"
        server.start()
        await on_backend(cache, "redis")
        await exercise(cache)
        stats = (await cache.get_statistics()).to_dict()
        assert stats["failovers"] == 1
        assert stats["failbacks"] == 1
        assert stats["breakerState"] == "closed"
        assert stats["timeOnFallback"] > 0
        assert stats["backendErrors"] >= 1
    finally:
        await cache.close()


async def test_paused_server_never_serves_stale_values(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        await seed(
            raw,
            cache,
            {
                "user:written": "old",
                "user:deleted": "old",
                "user:untouched": "old",
                "page:1": "old",
                "page:2": "old",
                "report:1": "old",
                "plain": "old",
            },
        )
        server.pause()
        try:
            await cache.set("user:written", "new")  # times out on Redis: fails over
            assert cache.backend.name == "memory"
            assert await cache.get("user:written") == "new"
            await cache.invalidate("user:deleted")
            await cache.invalidate_pattern("page:*")
            await cache.invalidate_namespace("report")
            await cache.set("plain", "new", ttl=3600)
            # Outage writes are capped: other processes cannot see them.
            ttl = await cache.ttl("plain")
            assert ttl is not None
            assert ttl <= 60
            lat = await latencies(cache)
            assert p99(lat) < OP_TIMEOUT / 2
        finally:
            server.resume()
        await on_backend(cache, "redis")
        got = {
            k: await cache.get(k, default=MISSING)
            for k in [
                "user:written",
                "user:deleted",
                "page:1",
                "page:2",
                "report:1",
                "plain",
            ]
        }
        assert all(v != "old" for v in got.values()), got
        assert await cache.get("user:untouched") == "old"  # a precise replay spares it
    finally:
        await cache.close()


async def test_partition_never_serves_stale_values(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    proxy = TcpProxy(server.host, server.port)
    await proxy.start()
    cache = make_cache(proxy.url)
    try:
        await cache.initialize()
        assert cache.backend.name == "redis"
        await seed(raw, cache, {"a": "old", "b": "old", "c": "old"})
        proxy.cut()
        try:
            await exercise(cache)
            assert cache.backend.name == "memory"
            await cache.set("a", "new")
            await cache.invalidate("b")
            lat = await latencies(cache)
            assert p99(lat) < OP_TIMEOUT / 2
        finally:
            proxy.heal()
        await on_backend(cache, "redis")
        assert await cache.get("a", default=MISSING) != "old"
        assert await cache.get("b", default=MISSING) is MISSING
        assert await cache.get("c") == "old"
    finally:
        await cache.close()
        await proxy.close()


async def test_journal_overflow_widens_to_namespaces(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = make_cache(server.url, journal_max_keys=5)
    try:
        await cache.initialize()
        await seed(raw, cache, {f"user:{i}": "old" for i in range(20)} | {"agent:1": "old"})
        server.pause()
        try:
            for i in range(20):
                await cache.set(f"user:{i}", "new")
        finally:
            server.resume()
        await on_backend(cache, "redis")
        values = await cache.get_many([f"user:{i}" for i in range(20)])
        assert "old" not in values.values(), values
        assert await cache.get("agent:1") == "old"  # another namespace, untouched
    finally:
        await cache.close()


async def test_journal_overflow_without_namespace_clears_the_prefix(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = make_cache(server.url, journal_max_keys=3)
    try:
        await cache.initialize()
        await seed(raw, cache, {f"k{i}": "old" for i in range(10)} | {"agent:1": "old"})
        await raw.set("foreign", "theirs")
        server.pause()
        try:
            for i in range(10):
                await cache.invalidate(f"k{i}")
        finally:
            server.resume()
        await on_backend(cache, "redis")
        values = await cache.get_many([f"k{i}" for i in range(10)] + ["agent:1"])
        assert values == {}, values  # the whole prefix was invalidated ...
        assert await raw.get("foreign") == b"theirs"  # ... and nothing outside it
    finally:
        await cache.close()


async def test_clear_during_outage_is_replayed(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        await seed(raw, cache, {"a": "old", "user:1": "old"})
        await raw.set("foreign", "theirs")
        server.pause()
        try:
            await cache.get("a")  # times out: fails over
            assert cache.backend.name == "memory"
            assert await cache.clear() == 0  # the memory tier was empty
        finally:
            server.resume()
        await on_backend(cache, "redis")
        assert await raw.mget([PREFIX + "a", PREFIX + "user:1"]) == [None, None]
        assert await raw.get("foreign") == b"theirs"
    finally:
        await cache.close()


async def test_slow_server_fails_over_and_comes_back(redis_server_binary_path: str) -> None:
    # Redis 7 refuses DEBUG unless told otherwise.
    server = RedisServer(redis_server_binary_path, extra_args=["--enable-debug-command", "local"])
    server.start()
    raw = redis_asyncio.Redis.from_url(server.url, socket_timeout=5)
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        await cache.set("k", "v")
        sleeper = asyncio.ensure_future(raw.execute_command("DEBUG", "SLEEP", "1"))
        await asyncio.sleep(0.05)  # let DEBUG SLEEP reach the server first
        start = time.perf_counter()
        await cache.get("k")  # blocks behind DEBUG SLEEP: times out, fails over
        assert time.perf_counter() - start < 5 * OP_TIMEOUT
        assert cache.backend.name == "memory"
        await exercise(cache)
        await sleeper
        await on_backend(cache, "redis")
    finally:
        await cache.close()
        await raw.aclose()
        server.close()


async def test_client_pause_is_detected(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        await raw.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        await exercise(cache)
        assert cache.backend.name == "memory"
        await on_backend(cache, "redis")
    finally:
        await cache.close()


async def test_start_without_redis_then_pick_it_up(redis_server_binary_path: str) -> None:
    port = free_port()
    cache = make_cache(f"redis://127.0.0.1:{port}/0")
    server = RedisServer(redis_server_binary_path, port=port)
    try:
        await cache.initialize()  # must not raise
        assert cache.backend.name == "memory"
        await cache.set("k", "during")
        server.start()
        await on_backend(cache, "redis")
        assert await cache.get("k", default=MISSING) is MISSING  # memory writes replayed away
        await cache.set("k", "after")
        assert await cache.get("k") == "after"
    finally:
        await cache.close()
        server.close()


async def test_one_log_line_and_one_callback_per_transition(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Transition] = []
    cache = make_cache(server.url, on_transition=seen.append)
    try:
        await cache.initialize()
        with caplog.at_level(logging.INFO, logger="chenu_cache"):
            server.kill()
            for _ in range(50):
                await cache.get("k")
                await cache.set("k", 1)
            server.start()
            await on_backend(cache, "redis")
            for _ in range(20):
                await cache.get("k")
        ours = [r for r in caplog.records if r.name == "chenu_cache"]
        warnings = [r for r in ours if r.levelno == logging.WARNING]
        infos = [r for r in ours if r.levelno == logging.INFO]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert len(infos) == 1, [r.getMessage() for r in infos]
        assert [t.event for t in seen] == ["failover", "failback"]
        assert seen[1].outage_seconds is not None
        assert seen[1].outage_seconds > 0
    finally:
        await cache.close()


async def test_concurrent_callers_during_a_hang_all_get_answers(server: RedisServer) -> None:
    cache = make_cache(server.url)
    try:
        await cache.initialize()
        server.pause()
        try:
            results = await asyncio.gather(
                *(cache.get_or_set(f"k{i % 5}", lambda i=i: i) for i in range(200)),
                return_exceptions=True,
            )
        finally:
            server.resume()
        assert not [r for r in results if isinstance(r, BaseException)]
        await on_backend(cache, "redis")
    finally:
        await cache.close()


async def test_queued_callers_do_not_pay_one_timeout_per_batch(
    redis_server_binary_path: str,
) -> None:
    server = RedisServer(redis_server_binary_path)
    server.start()
    # 8 connections, 200 callers: without giving up in the queue, the last callers would
    # wait 25 operation timeouts in a row.
    cache = FallbackCache(
        primary=RedisBackend(
            server.url, prefix=PREFIX, operation_timeout=OP_TIMEOUT, max_connections=8
        ),
        probe_interval=0.05,
        probe_max_interval=0.3,
    )
    try:
        await cache.initialize()
        await cache.set("k", "v")
        server.pause()
        try:

            async def timed_get() -> float:
                start = time.perf_counter()
                await cache.get("k")
                return time.perf_counter() - start

            durations = await asyncio.gather(*(timed_get() for _ in range(200)))
        finally:
            server.resume()
        assert max(durations) < 4 * OP_TIMEOUT, f"slowest caller waited {max(durations):.2f}s"
        await on_backend(cache, "redis")
    finally:
        await cache.close()
        server.close()


async def test_changes_acknowledged_just_before_a_failure_are_replayed(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    # A primary may lose what it acknowledged last (a replica promoted before it caught
    # up): the failback also deletes what changed in the last seconds before failover.
    cache = make_cache(server.url, recent_window=30)
    try:
        await cache.initialize()
        await raw.set(PREFIX + "fresh", json_bytes("older"))
        await raw.set(PREFIX + "gone:1", json_bytes("older"))
        await cache.set("fresh", "newer")
        await cache.invalidate_pattern("gone:*")
        # Simulate the loss: both acknowledged changes vanish, the older values return.
        await raw.set(PREFIX + "fresh", json_bytes("older"))
        await raw.set(PREFIX + "gone:1", json_bytes("older"))
        server.pause()
        try:
            await cache.get("fresh")  # fails over
            assert cache.backend.name == "memory"
        finally:
            server.resume()
        await on_backend(cache, "redis")
        assert await cache.get("fresh", default=MISSING) is MISSING  # never "older"
        assert await cache.get("gone:1", default=MISSING) is MISSING
    finally:
        await cache.close()


def json_bytes(value: str) -> bytes:
    """Bytes as the cache stores a JSON string (header, then the JSON)."""
    from chenu_cache import Codec

    return Codec().encode(value)
