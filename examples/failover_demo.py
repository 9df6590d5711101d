"""Failover without killing anything: the cache points at a port where no Redis listens.

    python examples/failover_demo.py

initialize() does not raise; calls are answered from memory, quickly, and the cache
keeps probing for Redis in the background. Start a Redis on the port to see failback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from chenu_cache import FallbackCache


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    url = f"redis://127.0.0.1:{closed_port()}/0"
    cache = FallbackCache(redis_url=url, read_env=False)
    await cache.initialize()  # logs one warning, raises nothing
    print("serving from:", cache.backend.name)

    start = time.perf_counter()
    for i in range(1000):
        await cache.set(f"k{i}", i)
        await cache.get(f"k{i}")
    elapsed = (time.perf_counter() - start) * 1000
    print(f"2,000 calls while Redis is unreachable: {elapsed:.1f} ms, no exception")
    stats = (await cache.get_statistics()).to_dict()
    print("breaker:", stats["breakerState"], "failovers:", stats["failovers"])
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
