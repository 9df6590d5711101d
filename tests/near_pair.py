"""A versioned writer/reader pair for the near cache's tests (SPEC §13).

The writer writes increasing versions of its keys straight to Redis (another client,
as another process would); the reader is a `FallbackCache` with a near cache. After a
round of writes has returned, `synced` waits until the reader's tracking link has
answered a heartbeat sent after them (so every invalidation for them has been read),
or has given up tracking; from then on a read of a key that returns anything but its
latest version, or a miss, is a stale read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chenu_cache import MISSING, Codec, FallbackCache
from chenu_cache._near import NearCache

Write = Callable[[str, bytes], Awaitable[object]]


def near_of(cache: FallbackCache) -> NearCache:
    near = cache._failover.near
    assert near is not None, "the cache has no near cache"
    return near


async def synced(cache: FallbackCache, since: float, timeout: float = 10.0) -> None:
    """Wait until a heartbeat sent after ``since`` answered, or tracking is down."""
    near = near_of(cache)
    deadline = time.monotonic() + timeout
    while True:
        until = near._coherent_until
        tracking = near._tracking
        grace = 0.0
        if tracking is not None:
            grace = getattr(tracking, "_grace", 0.0)
        if until == 0.0 or until - grace >= since:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the tracking link neither answered nor went down")
        await asyncio.sleep(0.005)


async def tracking(cache: FallbackCache, key: str = "warm-up", timeout: float = 10.0) -> None:
    """Read once (tracking starts on the first read), then wait until it serves."""
    deadline = time.monotonic() + timeout
    while True:
        await cache.get(key)
        if cache.statistics().near_cache.tracking:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"near cache tracking not up: {cache.statistics().near_cache.last_error}"
            )
        await asyncio.sleep(0.01)


@dataclass
class Pair:
    reader: FallbackCache
    write: Write
    keys: list[str]
    versions: dict[str, int] = field(default_factory=dict)
    """The latest version of each key whose write was acknowledged."""
    attempted: dict[str, int] = field(default_factory=dict)
    stale: list[tuple[str, object, int]] = field(default_factory=list)
    reads: int = 0
    write_errors: int = 0
    codec: Codec = field(default_factory=Codec)

    async def write_all(self) -> float:
        """Write the next version of every key; return when the last write returned."""
        for key in self.keys:
            version = self.attempted[key] = self.attempted.get(key, 0) + 1
            try:
                await self.write(key, self.codec.encode(version))
            except Exception:  # not acknowledged: it may or may not have been written
                self.write_errors += 1
                continue
            self.versions[key] = version
        return time.monotonic()

    async def read_all(self, times: int = 3) -> None:
        """Read every key ``times`` times (the first may miss the near cache, the others
        hit it); each must be a miss or at least the latest acknowledged version."""
        for _ in range(times):
            for key in self.keys:
                got = await self.reader.get(key, default=MISSING)
                self.reads += 1
                latest = self.versions.get(key)
                if got is MISSING or latest is None:
                    continue
                # Older than the acknowledged version is stale; newer can only be one
                # whose write failed on the way back.
                if not isinstance(got, int) or got < latest:
                    self.stale.append((key, got, latest))

    async def round(self) -> None:
        written = await self.write_all()
        await synced(self.reader, written)
        await self.read_all()
