"""Faults in scaled-out deployments: a cluster primary killed, a Sentinel failover and a
slot migration, each mid-traffic. No caller sees an error and no stale value comes back.

Each test starts its own deployment and stops it in a ``finally``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from chenu_cache import MISSING, FallbackCache
from tests.conftest import eventually
from tests.deployments import Cluster, SentinelSetup

pytestmark = pytest.mark.redis


@dataclass
class Traffic:
    """Workers that each own some keys, write increasing versions and read them back.

    A worker is the only writer of its keys, so after ``set(k, v)`` returns, a read of
    ``k`` may miss but must never give anything older than ``v``: that would be stale.
    """

    cache: FallbackCache
    workers: int = 8
    keys_per_worker: int = 25
    errors: list[BaseException] = field(default_factory=list)
    stale: list[tuple[str, object, int]] = field(default_factory=list)
    operations: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._work(w)) for w in range(self.workers)]

    async def _work(self, worker: int) -> None:
        version = 0
        keys = [f"w{worker}:{i}" for i in range(self.keys_per_worker)]
        while not self._stop.is_set():
            version += 1
            for key in keys:
                try:
                    await self.cache.set(key, version)
                    got = await self.cache.get(key, default=MISSING)
                    if got is not MISSING and got != version:
                        self.stale.append((key, got, version))
                    await self.cache.get_many(keys[:5])
                    self.operations += 3
                except Exception as exc:
                    self.errors.append(exc)
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def make_cache(url: str) -> FallbackCache:
    return FallbackCache(
        redis_url=url,
        prefix="scale:",
        operation_timeout=0.25,
        probe_interval=0.05,
        probe_max_interval=0.5,
        read_env=False,
    )


async def more_traffic(traffic: Traffic, operations: int, timeout: float = 30.0) -> None:
    """Wait until the workers have done ``operations`` more calls."""
    target = traffic.operations + operations

    async def done() -> bool:
        return traffic.operations >= target

    await eventually(done, timeout=timeout)


async def on_redis(cache: FallbackCache, timeout: float = 30.0) -> None:
    async def check() -> bool:
        return cache.backend.name == "redis"

    await eventually(check, timeout=timeout)


async def test_cluster_primary_killed_mid_traffic(cluster: Cluster) -> None:
    cache = make_cache(cluster.url)
    traffic = Traffic(cache)
    try:
        await cache.initialize()
        assert cache.backend.name == "redis"
        traffic.start()
        await more_traffic(traffic, 300)
        victim = cluster.nodes[1]
        victim.kill()

        async def failed_over() -> bool:
            return cache.backend.name == "memory"

        await eventually(failed_over, timeout=30)
        await more_traffic(traffic, 300)
        victim.start()  # same port, same nodes.conf: it rejoins
        cluster.wait_ok()
        await on_redis(cache)
        await more_traffic(traffic, 300)
        await traffic.stop()
        assert traffic.errors == []
        assert traffic.stale == []
        stats = (await cache.get_statistics()).to_dict()
        assert stats["failovers"] >= 1
        assert stats["failbacks"] >= 1
    finally:
        await traffic.stop()
        await cache.clear()
        await cache.close()


async def test_slot_migration_mid_traffic(cluster: Cluster) -> None:
    cache = make_cache(cluster.url)
    traffic = Traffic(cache, workers=6, keys_per_worker=60)
    try:
        await cache.initialize()
        traffic.start()
        await more_traffic(traffic, 1000)
        started = time.monotonic()
        await asyncio.to_thread(cluster.reshard, 300, cluster.nodes[0], cluster.nodes[2])
        assert time.monotonic() - started < 120
        await more_traffic(traffic, 300)
        await traffic.stop()
        assert traffic.errors == []
        assert traffic.stale == []
        # Once on Redis, every key is written and read where the cluster now keeps it.
        await on_redis(cache)
        keys = [f"w{w}:{i}" for w in range(6) for i in range(60)]
        await cache.set_many(dict.fromkeys(keys, "after"))
        assert await cache.get_many(keys) == dict.fromkeys(keys, "after")
    finally:
        await traffic.stop()
        await cache.clear()
        await cache.close()


async def test_sentinel_failover_mid_traffic(sentinel: SentinelSetup) -> None:
    cache = make_cache(sentinel.url)
    traffic = Traffic(cache)
    try:
        await cache.initialize()
        assert cache.backend.name == "redis"
        old_primary = sentinel.primary_port()
        traffic.start()
        await more_traffic(traffic, 300)
        new_primary = await asyncio.to_thread(sentinel.failover)
        assert new_primary != old_primary
        # Until the sentinels demote it, the old primary still takes writes, which its
        # demotion throws away: keep the traffic going past that point.
        await asyncio.to_thread(sentinel.wait_demoted, old_primary)
        await more_traffic(traffic, 600)
        await on_redis(cache)
        await more_traffic(traffic, 300)
        await traffic.stop()
        assert traffic.errors == []
        assert traffic.stale == []
        stats = (await cache.get_statistics()).to_dict()
        assert stats["failovers"] >= 1  # the switch went through a replay
        assert stats["failbacks"] == stats["failovers"]
        # The cache now writes to the promoted replica.
        await cache.set("after", "failover")
        assert await cache.get("after") == "failover"
    finally:
        await traffic.stop()
        await cache.clear()
        await cache.close()
