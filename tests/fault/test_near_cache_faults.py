"""The near cache under faults (SPEC §13): its tracking connection killed, Redis paused,
killed and restarted, flushed, a Cluster primary lost, a slot moved, a Sentinel
promotion. After each, a versioned writer/reader pair (`tests.near_pair`) reads no
stale value, and the near cache serves again once it can vouch for itself.

Every server is the test's own and is stopped in a fixture, even when the test fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import MISSING, FallbackCache, NearCacheOptions, RedisBackend
from tests.conftest import eventually
from tests.deployments import Cluster, SentinelSetup
from tests.near_pair import Pair, near_of, synced, tracking
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

KEYS = [f"k{i}" for i in range(6)]
PairOn = Callable[[str], Awaitable[Pair]]


def reader_for(url: str) -> FallbackCache:
    return FallbackCache(
        redis_url=url,
        prefix="near:",
        near_cache=NearCacheOptions(heartbeat=0.05),
        operation_timeout=0.25,
        probe_interval=0.05,
        probe_max_interval=0.5,
        read_env=False,
    )


@pytest.fixture
async def pair_on(
    request: pytest.FixtureRequest,
) -> AsyncIterator[PairOn]:
    """Builds a pair on a URL, tracking and through a few healthy rounds; closes its
    reader and writer afterwards."""
    made: list[tuple[FallbackCache, RedisBackend]] = []

    async def build(url: str) -> Pair:
        reader = reader_for(url)
        writer = RedisBackend(url, prefix="near:", operation_timeout=1.0)
        made.append((reader, writer))
        pair = Pair(reader, lambda key, data: writer.set(key, data, 60), list(KEYS))
        await reader.initialize()
        await tracking(reader)
        await rounds(pair, 3)
        return pair

    yield build
    for reader, writer in made:
        await reader.close()
        await writer.close()


async def serving(pair: Pair, timeout: float = 30.0) -> None:
    """Wait until the reader is back on Redis with its near cache tracking."""

    async def back() -> bool:
        await pair.reader.get("probe")
        stats = pair.reader.statistics()
        return stats.backend == "redis" and stats.near_cache.tracking

    try:
        await eventually(back, timeout=timeout, interval=0.02)
    except AssertionError:
        stats = pair.reader.statistics()
        raise AssertionError(
            f"not back: backend {stats.backend} ({stats.failover.last_error}), "
            f"near cache {stats.near_cache}"
        ) from None


async def rounds(pair: Pair, count: int) -> None:
    for _ in range(count):
        await pair.round()


async def near_hits_again(pair: Pair) -> None:
    hits = pair.reader.statistics().near_cache.hits
    await rounds(pair, 3)
    assert pair.reader.statistics().near_cache.hits > hits
    assert pair.stale == []


async def _tracking_client_ids(url: str) -> list[int]:
    raw = redis_asyncio.Redis.from_url(url)
    try:
        clients = await raw.client_list()
    finally:
        await raw.aclose()
    return [int(c["id"]) for c in clients if c.get("name") == "chenu-near-tracking"]


async def test_tracking_connection_killed(server: RedisServer, pair_on: PairOn) -> None:
    pair = await pair_on(server.url)
    flushes = pair.reader.statistics().near_cache.flushes
    for _ in range(3):
        ids = await _tracking_client_ids(server.url)
        assert len(ids) == 1
        raw = redis_asyncio.Redis.from_url(server.url)
        try:
            await raw.client_kill_filter(_id=ids[0])
        finally:
            await raw.aclose()
        await rounds(pair, 2)  # at once: the link is down or being re-established
        await serving(pair)
        await rounds(pair, 2)
    assert pair.stale == []
    stats = pair.reader.statistics().near_cache
    assert stats.flushes >= flushes + 3
    assert stats.links == 1
    assert stats.last_error is not None
    await near_hits_again(pair)


async def test_redis_paused_then_resumed(server: RedisServer, pair_on: PairOn) -> None:
    pair = await pair_on(server.url)
    server.pause()
    try:
        # Read right away, while the link is still within its heartbeat's grace: these
        # reads leave placeholders, time out, fail over, and keep nothing.
        found = await asyncio.gather(
            pair.reader.get("fresh", default=MISSING),
            pair.reader.get_many(["fresh1", "fresh2"]),
        )
        assert found == [MISSING, {}]
        assert near_of(pair.reader)._pending == {}
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # reads while the server is silent
            await pair.read_all(times=1)
        assert pair.reader.statistics().near_cache.tracking is False
    finally:
        server.resume()
    await serving(pair)
    await rounds(pair, 5)
    assert pair.stale == []
    await near_hits_again(pair)


async def test_redis_killed_and_restarted(server: RedisServer, pair_on: PairOn) -> None:
    pair = await pair_on(server.url)
    server.kill()
    await rounds(pair, 2)  # writes fail, reads come from memory
    assert pair.write_errors > 0
    server.start()  # empty: nothing was persisted
    await serving(pair)
    await rounds(pair, 5)
    assert pair.stale == []
    assert pair.reader.statistics().failover.failbacks >= 1
    await near_hits_again(pair)


async def test_flushdb_mid_traffic(server: RedisServer, pair_on: PairOn) -> None:
    pair = await pair_on(server.url)
    for flush in ("FLUSHDB", "FLUSHALL"):
        await rounds(pair, 2)
        flushes = pair.reader.statistics().near_cache.flushes
        raw = redis_asyncio.Redis.from_url(server.url)
        try:
            await raw.execute_command(flush)
        finally:
            await raw.aclose()
        await synced(pair.reader, time.monotonic())
        for key in KEYS:  # gone from Redis: any value would be stale
            assert await pair.reader.get(key, default=MISSING) is MISSING
        assert pair.reader.statistics().near_cache.flushes > flushes
        await rounds(pair, 2)
    assert pair.stale == []
    await near_hits_again(pair)


async def test_cluster_primary_killed_and_slots_moved(cluster: Cluster, pair_on: PairOn) -> None:
    pair = await pair_on(cluster.url)
    assert pair.reader.statistics().near_cache.links == 3  # one per primary
    victim = cluster.nodes[1]
    victim.kill()
    await rounds(pair, 2)
    victim.start()  # same port, same nodes.conf: it rejoins
    await asyncio.to_thread(cluster.wait_ok)
    await serving(pair)
    await rounds(pair, 3)
    # Move slots while the pair runs: keys change primaries under the near cache.
    moving = asyncio.ensure_future(
        asyncio.to_thread(cluster.reshard, 2000, cluster.nodes[0], cluster.nodes[2])
    )
    try:
        while not moving.done():
            await pair.round()
    finally:
        await moving
    await rounds(pair, 3)
    assert pair.stale == []
    await serving(pair)
    await near_hits_again(pair)


async def test_sentinel_promotion(sentinel: SentinelSetup, pair_on: PairOn) -> None:
    pair = await pair_on(sentinel.url)
    old_primary = sentinel.primary_port()
    new_primary = await asyncio.to_thread(sentinel.failover)
    assert new_primary != old_primary
    # Until the sentinels demote it, the old primary takes writes its demotion throws
    # away: the pair's writer could lose a version there. Wait it out, then check.
    await asyncio.to_thread(sentinel.wait_demoted, old_primary)
    await serving(pair)
    await rounds(pair, 5)
    assert pair.stale == []
    flushes = pair.reader.statistics().near_cache.flushes
    assert flushes >= 1
    await near_hits_again(pair)
