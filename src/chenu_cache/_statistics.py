"""Assembling a `CacheStatistics` from the counters of the facade, its tiers and its loader.

One function for both snapshots: `FallbackCache.statistics()` (at once, no I/O) and
`FallbackCache.get_statistics()` (which adds what only the Redis server can tell).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._failover import Failover
from ._loader import Loader
from .backends.base import Backend, BackendStats, SupportsStatsNowait
from .exceptions import BackendError
from .stats import (
    CacheStatistics,
    Counters,
    FailoverStatistics,
    HealthReport,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    NearCacheStatistics,
    RedisStatistics,
)

__all__ = ["assemble", "counters_now", "gather", "health_report", "snapshot"]


def counters_now(backend: Backend) -> BackendStats | None:
    """The backend's own counters without I/O, if it can give them."""
    if isinstance(backend, SupportsStatsNowait):
        return backend.stats_nowait()
    return None


def _redis(configured: bool, connected: bool, primary: BackendStats | None) -> RedisStatistics:
    if not configured:
        return RedisStatistics(configured=False, connected=False)
    details: Mapping[str, object] = {}
    hits = misses = 0
    if connected and primary is not None:
        details = primary.details
        hits, misses = primary.hits, primary.misses
    clients = details.get("connected_clients")
    used = details.get("used_memory")
    human = details.get("used_memory_human")
    return RedisStatistics(
        configured=True,
        connected=connected,
        used_memory=str(human) if human is not None else None,
        used_memory_bytes=int(str(used)) if used is not None else None,
        connected_clients=int(str(clients)) if clients is not None else None,
        hits=hits,
        misses=misses,
    )


def assemble(
    *,
    serving: str,
    counters: Counters,
    loader: Loader,
    failover: FailoverStatistics,
    memory: BackendStats | None,
    primary_configured: bool,
    primary_connected: bool,
    primary: BackendStats | None,
    near: NearCacheStatistics | None = None,
) -> CacheStatistics:
    """The statistics object, from counters already gathered (this does no I/O)."""
    if memory is None:
        memory = BackendStats(name="memory")
    return CacheStatistics(
        backend=serving,
        redis=_redis(primary_configured, primary_connected, primary),
        memory=MemoryStatistics(
            hits=memory.hits,
            misses=memory.misses,
            size=memory.entries or 0,
            bytes=memory.bytes or 0,
            evictions=memory.evictions,
            expirations=memory.expirations,
        ),
        hits=counters.hits,
        misses=counters.misses,
        decode_errors=counters.decode_errors,
        type_errors=counters.type_errors,
        command_errors=counters.command_errors,
        stale_by_tag=counters.stale_by_tag,
        tag_invalidations=counters.tag_invalidations,
        namespaces={
            name: NamespaceStatistics(hits=h, misses=m)
            for name, (h, m) in counters.namespaces.items()
        },
        loader=LoaderStatistics(
            calls=counters.loader_calls,
            errors=counters.loader_errors,
            coalesced=loader.flights.joined,
            refreshes=loader.background.started,
            refresh_failures=loader.background.failed,
            stale_served=counters.stale_served,
            fenced=counters.fenced,
            not_cached=counters.not_cached,
        ),
        failover=failover,
        near_cache=near if near is not None else NearCacheStatistics(),
    )


_NOW: Any = object()


def snapshot(
    failover: Failover,
    counters: Counters,
    loader: Loader,
    primary_stats: BackendStats | None = _NOW,
    memory: BackendStats | None = None,
) -> CacheStatistics:
    """A cache's statistics from what this process counted (no I/O); the primary's
    and the fallback's own figures when given, else their counters of now."""
    primary = failover.primary
    if primary_stats is _NOW:
        primary_stats = counters_now(primary) if primary is not None else None
    return assemble(
        serving=failover.active.name,
        counters=counters,
        loader=loader,
        failover=failover.statistics(),
        memory=memory if memory is not None else counters_now(failover.fallback),
        primary_configured=primary is not None,
        primary_connected=primary is not None and failover.active is primary,
        primary=primary_stats,
        near=failover.near.statistics() if failover.near is not None and primary else None,
    )


async def gather(failover: Failover, counters: Counters, loader: Loader) -> CacheStatistics:
    """`snapshot`, with the Redis server's own figures (memory, clients) asked for."""
    primary = failover.primary
    primary_stats = None
    if primary is not None and failover.active is primary:
        try:
            primary_stats = await primary.stats()
        except BackendError as exc:
            await failover.failed(exc)
    fallback = failover.fallback
    memory = counters_now(fallback) or await fallback.stats()
    return snapshot(failover, counters, loader, primary_stats, memory)


async def health_report(failover: Failover) -> HealthReport:
    """Ping the primary (if any): which backend serves, and how Redis is doing.

    A failed ping while the primary serves fails over, as any failed call would.
    """
    primary = failover.primary
    latency: float | None = None
    error: str | None = None
    reachable: bool | None = None
    if primary is not None:
        try:
            latency = await primary.ping()
            reachable = True
        except BackendError as exc:
            reachable = False
            error = f"{type(exc).__name__}: {exc}"
            if failover.active is primary:
                await failover.failed(exc)
    degraded = primary is not None and failover.active is not primary
    return HealthReport(
        status="degraded" if degraded else "ok",
        backend=failover.active.name,
        breaker_state=failover.state,
        redis_configured=primary is not None,
        redis_reachable=reachable,
        redis_latency=latency,
        redis_error=error,
    )
