"""What RedisBackend gives a near cache (`SupportsTracking`): reads with their TTL, and
a tracking link to each primary (`_tracking.Tracker`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from redis.asyncio.connection import SSLConnection

from ._tracking import Endpoint, Tracker, endpoint_from
from .base import SupportsTracking, TrackingSink

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster

    from ._redis_loops import LoopState, LoopStates

__all__ = ["NearAbilities"]


def _seconds(millis: object) -> float | None:
    """PTTL's answer as seconds to live: ``None`` without expiry; 0 when gone."""
    value = int(cast("int", millis))
    if value == -1:
        return None
    return max(value, 0) / 1000


def _tls(connection_class: object) -> bool:
    return isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)


def _without_overlap(prefixes: Sequence[bytes]) -> list[bytes]:
    """BCAST refuses a prefix that contains another: keep the shortest of each family."""
    kept: list[bytes] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(shorter) for shorter in kept):
            kept.append(prefix)
    return kept


class NearAbilities(SupportsTracking):
    """Mixed into `RedisBackend`, which provides the attributes declared here."""

    prefix: str
    operation_timeout: float
    _tag_prefix: str
    _loops: LoopStates
    _hits: int
    _misses: int

    def tag_key(self, tag: str) -> str:
        return self._tag_prefix[len(self.prefix) :] + tag

    async def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        return (await self.get_many_with_ttl((key,)))[0]

    async def get_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[bytes | None, float | None]]:
        if not keys:
            return []
        state = self._loops.here()
        physical = [self.prefix + k for k in keys]
        if state.cluster and len(physical) > 1:  # keys spread over slots: one script each
            replies = await asyncio.gather(*(self._script(state, [key]) for key in physical))
            flat = [item for reply in replies for item in reply]
        else:
            flat = await self._script(state, physical)
        found: list[tuple[bytes | None, float | None]] = []
        for i in range(0, len(flat), 2):
            value = cast("bytes | None", flat[i])
            found.append((value, _seconds(flat[i + 1]) if value is not None else None))
        hits = sum(1 for value, _ in found if value is not None)
        self._hits += hits
        self._misses += len(found) - hits
        return found

    async def _script(self, state: LoopState, physical: list[str]) -> list[object]:
        async with state.command:
            reply = await state.get_with_ttl(keys=physical)
        return cast("list[object]", reply)

    def tracking(self, sink: TrackingSink, prefixes: Sequence[str], heartbeat: float) -> Tracker:
        state = self._loops.here()
        client: Any = state.client
        physical = _without_overlap([(self.prefix + p).encode() for p in prefixes])
        timeout = max(self.operation_timeout, 0.25)
        if state.cluster:
            cluster = cast("RedisCluster", client)

            async def primaries() -> list[Endpoint]:
                # The data client's own view, never a re-initialization of it: under
                # redis-py 5.0 a failed initialize() from here drops its startup nodes,
                # and then neither the data path nor this link could find the cluster.
                # An empty or stale view only delays tracking (the link retries).
                return [
                    endpoint_from(
                        node.connection_kwargs,
                        node.host,
                        int(node.port),
                        tls=_tls(node.connection_class),
                    )
                    for node in cluster.get_primaries()
                ]

            def topology() -> frozenset[str]:
                return frozenset(node.name for node in cluster.get_primaries())

            endpoints: Callable[[], Awaitable[list[Endpoint]]] = primaries
            watch: Callable[[], frozenset[str]] | None = topology
        else:
            pool = client.connection_pool
            kwargs = dict(pool.connection_kwargs)
            tls = _tls(pool.connection_class)

            async def primary() -> list[Endpoint]:
                if getattr(pool, "sentinel_manager", None) is not None:  # ask the sentinels
                    host, port = await pool.get_master_address()
                    return [endpoint_from(kwargs, str(host), int(port), tls=tls)]
                return [endpoint_from(kwargs, tls=tls)]

            endpoints, watch = primary, None
        return Tracker(
            sink,
            endpoints=endpoints,
            prefixes=physical,
            strip=len(self.prefix.encode()),
            heartbeat=heartbeat,
            timeout=timeout,
            topology=watch,
        )
