"""Scale-out figures: deployment start-up, get_many on a cluster, and what callers see
during a cluster primary kill and a Sentinel failover.

    python -m benchmarks.scaleout
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from typing import Any

from tests.deployments import Cluster, SentinelSetup
from tests.redis_server import RedisServer

from chenu_cache import FallbackCache


async def get_many_rate(url: str, rounds: int = 30) -> float:
    cache = FallbackCache(redis_url=url, prefix="bench-scale:", read_env=False)
    await cache.initialize()
    keys = [f"user:{i}" for i in range(1000)]
    await cache.set_many({key: {"id": 1, "name": "x"} for key in keys})
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            found = await cache.get_many(keys)
            assert len(found) == 1000
        rates.append(rounds * 1000 / (time.perf_counter() - start))
    await cache.clear()
    await cache.close()
    return statistics.median(rates)


async def during(url: str, event: Any, label: str) -> dict[str, Any]:
    """Run 8 callers in a loop, trigger ``event``, and report what the callers saw."""
    cache = FallbackCache(
        redis_url=url, prefix="bench-scale:", probe_interval=0.05, probe_max_interval=0.5
    )
    await cache.initialize()
    latencies: list[float] = []
    errors = 0
    stop = asyncio.Event()

    async def caller(n: int) -> None:
        nonlocal errors
        i = 0
        while not stop.is_set():
            i += 1
            start = time.perf_counter()
            try:
                await cache.set(f"c{n}:{i % 50}", i)
                await cache.get(f"c{n}:{i % 50}")
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(caller(n)) for n in range(8)]
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    await event()
    while True:  # until the cache serves from Redis again, and at least a second
        if cache.backend.name == "redis" and time.perf_counter() - started >= 1:
            break
        await asyncio.sleep(0.01)
    settled = time.perf_counter() - started
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    stats = (await cache.get_statistics()).to_dict()
    await cache.clear()
    await cache.close()
    return {
        "event": label,
        "caller errors": errors,
        "calls": len(latencies),
        "p50 ms": round(statistics.median(latencies) * 1000, 3),
        "p99 ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 1),
        "max ms": round(max(latencies) * 1000, 1),
        "failovers": stats["failovers"],
        "failbacks": stats["failbacks"],
        "on memory s": stats["timeOnFallback"],
        "event to settled s": round(settled, 2),
    }


async def main() -> None:
    binary = shutil.which("redis-server")
    assert binary
    cluster = Cluster(binary)
    sentinel = SentinelSetup(binary)
    single = RedisServer(binary)
    try:
        single.start()
        cluster.start()
        sentinel.start()
        print(f"start-up: cluster {cluster.start_seconds:.2f} s")
        print(f"start-up: sentinel {sentinel.start_seconds:.2f} s")
        for label, url in (("single Redis", single.url), ("3-primary cluster", cluster.url)):
            print(f"get_many of 1,000 keys, {label}: {await get_many_rate(url):,.0f} keys/s")

        victim = cluster.nodes[1]

        async def kill_and_restart() -> None:
            victim.kill()
            await asyncio.sleep(3)
            victim.start()
            await asyncio.to_thread(cluster.wait_ok)

        for row in [
            await during(cluster.url, kill_and_restart, "cluster primary killed for 3 s"),
            await during(
                sentinel.url, lambda: asyncio.to_thread(sentinel.failover), "SENTINEL FAILOVER"
            ),
        ]:
            print(row)
    finally:
        sentinel.close()
        cluster.close()
        single.close()


if __name__ == "__main__":
    asyncio.run(main())
