"""Invalidation events (SPEC §16): one replayable stream, followed by ``events()``.

Real Redis (and Cluster, Sentinel); readers run as tasks and are waited on with
deadlines, never with fixed sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import CacheEvent, ConfigurationError, FallbackCache, InvalidKeyError
from tests.conftest import DEPLOYMENTS, eventually
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy


async def collect(cache: FallbackCache, n: int, since: str | None = None) -> list[CacheEvent]:
    found: list[CacheEvent] = []
    async for event in cache.events(since):
        found.append(event)
        if len(found) == n:
            break
    return found


async def mark(cache: FallbackCache) -> str:
    """The id of a marker event, the stream's first (each test has its own prefix):
    readers start after it, so what they must see is exact, with no race on "now"."""
    await cache.invalidate("probe:start")
    (marker,) = await asyncio.wait_for(collect(cache, 1, since="0"), 10)
    assert marker.keys == ("probe:start",)
    return marker.id


@pytest.fixture(params=list(DEPLOYMENTS))
async def three(
    request: pytest.FixtureRequest, prefix: str
) -> AsyncIterator[tuple[FallbackCache, FallbackCache, FallbackCache]]:
    url: str = request.getfixturevalue(DEPLOYMENTS[request.param])
    caches = [
        FallbackCache(redis_url=url, prefix=prefix, events=True, read_env=False) for _ in range(3)
    ]
    for cache in caches:
        await cache.initialize()
    try:
        yield caches[0], caches[1], caches[2]
    finally:
        await caches[0].clear()
        for cache in caches:
            await cache.close()


@pytest.mark.redis
async def test_two_instances_events_reach_a_third_in_stream_order(
    three: tuple[FallbackCache, FallbackCache, FallbackCache],
) -> None:
    one, two, reader = three
    task = asyncio.create_task(collect(reader, 6, since=await mark(one)))
    await one.invalidate("user:1")
    await two.delete_many(["user:2", "post:3"])
    await one.invalidate_pattern("user:4*")
    await two.invalidate_namespace("session")
    await one.invalidate_tags("user:9", "org:1")
    await two.clear()
    events = await asyncio.wait_for(task, 10)
    assert [e.kind for e in events] == ["key", "keys", "pattern", "namespace", "tags", "clear"]
    assert events[0].keys == ("user:1",)
    assert events[1].keys == ("user:2", "post:3")
    assert events[2].pattern == "user:4*"
    assert events[3].namespace == "session"
    assert events[4].tags == ("user:9", "org:1")
    assert events[0].origin != events[1].origin  # each instance says who it is
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert all(not e.replayed for e in events)


@pytest.mark.redis
async def test_replay_from_an_id_and_reset_after_trimming(redis_url: str, prefix: str) -> None:
    async with FallbackCache(
        redis_url=redis_url, prefix=prefix, events=True, events_maxlen=5, read_env=False
    ) as cache:
        task = asyncio.create_task(collect(cache, 3, since=await mark(cache)))
        await cache.invalidate("a:1")
        await cache.invalidate("a:2")
        await cache.invalidate("a:3")
        first, second, third = await asyncio.wait_for(task, 10)
        again = await asyncio.wait_for(collect(cache, 2, since=first.id), 10)
        assert [e.id for e in again] == [second.id, third.id]  # strictly after the id
        # Trimming is approximate (whole stream nodes): write well past the bound.
        for i in range(400):
            await cache.invalidate(f"b:{i}")
        replay = await asyncio.wait_for(collect(cache, 2, since=first.id), 10)
        assert replay[0].kind == "reset"  # events after `first` are gone: all may be stale
        assert replay[1].kind == "key"
        await cache.clear()


async def test_events_need_to_be_enabled_and_ids_well_formed() -> None:
    async with FallbackCache(read_env=False) as plain:
        with pytest.raises(ConfigurationError):
            plain.events()
    async with FallbackCache(events=True, read_env=False) as cache:
        with pytest.raises(InvalidKeyError):
            await cache.events(since="yesterday").__anext__()
        # A memory-only cache has an in-process log.
        task = asyncio.create_task(collect(cache, 1, since=await mark(cache)))
        await cache.invalidate("user:1")
        (event,) = await asyncio.wait_for(task, 5)
        assert event.keys == ("user:1",)


async def test_an_outages_events_are_published_at_failback(server: RedisServer) -> None:
    def make(**extra: Any) -> FallbackCache:
        return FallbackCache(
            redis_url=server.url,
            events=True,
            operation_timeout=0.25,
            probe_interval=0.05,
            read_env=False,
            **extra,
        )

    writer, reader = make(), make()
    async with writer, reader:
        task = asyncio.create_task(collect(reader, 2, since=await mark(reader)))
        server.pause()
        try:
            await writer.get("anything")  # fails over
            assert writer.backend.name == "memory"
            await writer.invalidate("user:1")  # journaled, with its event
            await writer.invalidate_tags("user:1")
        finally:
            server.resume()
        events = await asyncio.wait_for(task, 20)
        assert [(e.kind, e.replayed) for e in events] == [("key", True), ("tags", True)]


async def test_too_many_events_in_an_outage_become_one_reset(server: RedisServer) -> None:
    writer = FallbackCache(
        redis_url=server.url,
        events=True,
        events_maxlen=3,
        operation_timeout=0.25,
        probe_interval=0.05,
        read_env=False,
    )
    reader = FallbackCache(redis_url=server.url, events=True, read_env=False)
    async with writer, reader:
        task = asyncio.create_task(collect(reader, 1, since=await mark(reader)))
        server.pause()
        try:
            await writer.get("anything")
            for i in range(10):
                await writer.invalidate(f"user:{i}")
        finally:
            server.resume()

        async def back() -> bool:
            await writer.get("ping")
            return writer.backend.name == "redis"

        await eventually(back, timeout=20)
        (event,) = await asyncio.wait_for(task, 20)
        assert (event.kind, event.replayed) == ("reset", True)


@pytest.mark.redis
async def test_an_event_costs_one_command_per_invalidation(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    async with FallbackCache(redis_url=server.url, events=True, read_env=False) as cache:
        await cache.invalidate("warm")
        await raw.config_resetstat()
        for i in range(10):
            await cache.invalidate(f"user:{i}")
        stats = await raw.info("commandstats")

    def calls(command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    assert (calls("unlink"), calls("xadd")) == (10, 10)


async def test_a_deletion_and_its_event_take_one_round_trip(server: RedisServer) -> None:
    """UNLINK and XADD go pipelined: an invalidation with events on costs the round trip
    it costs without them (counted by a proxy between the cache and Redis)."""
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        for events in (False, True):
            async with FallbackCache(redis_url=proxy.url, events=events, read_env=False) as cache:
                await cache.set("warm", 1)
                before = proxy.round_trips
                for i in range(10):
                    await cache.invalidate(f"user:{i}")
                await cache.delete_many(["a:1", "a:2", "a:3"])
                assert proxy.round_trips - before == 11, events
                if events:
                    found = [e async for e in cache.events(since="0", wait=False)]
                    assert [e.kind for e in found] == ["key"] * 10 + ["keys"]
    finally:
        await proxy.close()


@pytest.mark.parametrize("memory_only", [False, True])
async def test_a_backlog_read_ends_and_the_latest_id_starts_after_it(
    memory_only: bool, request: pytest.FixtureRequest, prefix: str
) -> None:
    url = None if memory_only else request.getfixturevalue("redis_url")
    cache = FallbackCache(redis_url=url, prefix=prefix, events=True, read_env=False)
    await cache.initialize()
    try:
        assert cache.events_enabled
        assert await cache.latest_event_id() == "0-0"  # an empty stream
        for key in ("a:1", "a:2", "a:3"):
            await cache.invalidate(key)
        backlog = [e async for e in cache.events(since="0", wait=False)]
        assert [e.keys for e in backlog] == [("a:1",), ("a:2",), ("a:3",)]
        latest = await cache.latest_event_id()
        assert latest == backlog[-1].id
        assert [e async for e in cache.events(since=latest, wait=False)] == []
        await cache.invalidate("a:4")
        (after,) = [e async for e in cache.events(since=latest, wait=False)]
        assert after.keys == ("a:4",)
    finally:
        await cache.clear()
        await cache.close()
    off = FallbackCache(read_env=False)
    assert not off.events_enabled
    with pytest.raises(ConfigurationError):
        await off.latest_event_id()


async def test_an_acl_that_refuses_xadd_still_lets_invalidations_through(
    server: RedisServer, raw: redis_asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await raw.acl_setuser(
        "noevents", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-xadd"]
    )
    url = server.url.replace("redis://", "redis://noevents:pw@")
    async with FallbackCache(redis_url=url, events=True, read_env=False) as cache:
        for i in range(3):
            await cache.set(f"user:{i}", i)
            await cache.invalidate(f"user:{i}")
            assert await cache.get(f"user:{i}") is None
        assert cache.backend.name == "redis"  # refused is not an outage
        assert cache.statistics().failover.failovers == 0
    refused = [r for r in caplog.records if "event stream" in r.getMessage()]
    assert len(refused) == 1  # said once
