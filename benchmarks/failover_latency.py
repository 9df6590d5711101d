"""Per-call latency while Redis is killed or paused, and the time from its return to failback.

    python -m benchmarks.failover_latency [--outage 3] [--calls 2000]

Starts its own redis-server on a free loopback port; uses the cache's default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time

from tests.redis_server import RedisServer

from chenu_cache import FallbackCache


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


async def _calls(cache: FallbackCache, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        await cache.get_or_set(f"k{i % 100}", lambda i=i: i)
        out.append(time.perf_counter() - start)
    return out


async def _until_redis(cache: FallbackCache, deadline: float = 30.0) -> float:
    start = time.perf_counter()
    while cache.backend.name != "redis":
        if time.perf_counter() - start > deadline:
            raise RuntimeError("no failback")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def scenario(kind: str, server: RedisServer, outage: float, calls: int) -> dict[str, str]:
    cache = FallbackCache(redis_url=server.url, prefix="bench-failover:", read_env=False)
    await cache.initialize()
    await _calls(cache, 200)  # warm connections
    if kind == "killed":
        server.kill()
    else:
        server.pause()
    first_start = time.perf_counter()
    await cache.get("first")
    first = time.perf_counter() - first_start
    lat = await _calls(cache, calls)
    remaining = outage - (time.perf_counter() - first_start)
    if remaining > 0:
        await asyncio.sleep(remaining)
    if kind == "killed":
        server.start()
    else:
        server.resume()
    to_failback = await _until_redis(cache)
    await cache.clear()
    await cache.close()
    return {
        "scenario": kind,
        "first call": _ms(first),
        "median": _ms(statistics.median(lat)),
        "p99": _ms(statistics.quantiles(lat, n=100)[98]),
        "max": _ms(max(lat)),
        "return -> failback": _ms(to_failback),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays away")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not on PATH"
    with RedisServer(binary) as server:
        rows = [
            await scenario(kind, server, args.outage, args.calls)
            for _ in range(args.runs)
            for kind in ("killed", "paused")
        ]
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row[h] for h in headers) + " |")


if __name__ == "__main__":
    asyncio.run(main())
