"""A separate process for the cross-process lock tests: python -m tests.lock_worker ...

Modes: ``load`` waits for the go signal, then calls get_or_set(lock=...) with a loader
that counts its runs in Redis and sleeps; it prints the value it got. ``hold`` takes the
lock with a loader that never finishes (the test kills it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as redis_asyncio

from chenu_cache import FallbackCache


async def main(mode: str, url: str, prefix: str, key: str, lock_ttl: float) -> None:
    raw = redis_asyncio.Redis.from_url(url)
    cache = FallbackCache(redis_url=url, prefix=prefix, read_env=False)
    await cache.initialize()

    async def loader() -> dict[str, int]:
        await raw.incr(f"{prefix}test:loader-runs")
        await asyncio.sleep(0.3 if mode == "load" else 3600)
        return {"pid": os.getpid()}

    await raw.incr(f"{prefix}test:ready")
    if mode == "load":  # all workers start together, when the test pushes the go tokens
        await raw.blpop([f"{prefix}test:go"], timeout=60)
    value = await cache.get_or_set(key, loader, ttl=60, lock=lock_ttl)
    print(json.dumps(value), flush=True)
    await cache.close()
    await raw.aclose()


if __name__ == "__main__":
    mode, url, prefix, key, lock_ttl = sys.argv[1:6]
    asyncio.run(main(mode, url, prefix, key, float(lock_ttl)))
