"""A separate process for the fence tests: python -m tests.fence_worker URL PREFIX KEY.

Runs ``get_or_set(KEY)`` with a loader that says it started (a Redis counter), waits
for the test's go token, and returns ``{"pid": ...}``; prints the value its caller got.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as redis_asyncio

from chenu_cache import FallbackCache


async def main(url: str, prefix: str, key: str) -> None:
    raw = redis_asyncio.Redis.from_url(url)
    cache = FallbackCache(redis_url=url, prefix=prefix, read_env=False)
    await cache.initialize()

    async def loader() -> dict[str, int]:
        await raw.incr(f"{prefix}test:loading")
        await raw.blpop([f"{prefix}test:go"], timeout=60)
        return {"pid": os.getpid()}

    value = await cache.get_or_set(key, loader, ttl=60)
    print(json.dumps(value), flush=True)
    await cache.close()
    await raw.aclose()


if __name__ == "__main__":
    url, prefix, key = sys.argv[1:4]
    asyncio.run(main(url, prefix, key))
