"""Counters kept by the facade and the statistics object built from them (SPEC §7).

Two kinds of hit and miss counters live here, and they answer different questions:

- the cache's own (`CacheStatistics.hits`, ``misses``, per namespace): every logical
  lookup a caller made (``get``, ``get_many``, ``get_or_set``, ``@cache``), whichever
  tier answered it;
- a tier's (`RedisStatistics`, `MemoryStatistics`): the reads that reached that
  backend. The memory tier is read only while it serves (during an outage, or in a
  memory-only cache), so while Redis serves its counters stay still.

A read the backend answered with bytes the cache then refused (expired by freshness
metadata, undecodable) is a tier hit and a cache miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CacheStatistics",
    "Counters",
    "FailoverStatistics",
    "HealthReport",
    "LoaderStatistics",
    "MemoryStatistics",
    "NamespaceStatistics",
    "RedisStatistics",
]

NO_NAMESPACE = "(none)"
"""Statistics bucket for keys without a namespace."""


def _rate(hits: int, misses: int) -> float:
    total = hits + misses
    return round(hits / total, 4) if total else 0.0


class Counters:
    """Plain integer counters; incrementing one is all the hit path pays.

    Hits and misses live in one ``[hits, misses]`` list per namespace, which callers
    may keep (the facade caches it with each resolved key) and bump directly.
    """

    __slots__ = (
        "command_errors",
        "decode_errors",
        "loader_calls",
        "loader_errors",
        "namespaces",
        "stale_served",
    )

    def __init__(self) -> None:
        self.loader_calls = 0
        self.loader_errors = 0
        self.decode_errors = 0
        self.command_errors = 0
        self.stale_served = 0
        self.namespaces: dict[str, list[int]] = {}

    def slot(self, namespace: str | None) -> list[int]:
        """The ``[hits, misses]`` counters of ``namespace`` (``None``: no namespace)."""
        name = namespace or NO_NAMESPACE
        slot = self.namespaces.get(name)
        if slot is None:
            slot = self.namespaces[name] = [0, 0]
        return slot

    @property
    def hits(self) -> int:
        return sum(slot[0] for slot in self.namespaces.values())

    @property
    def misses(self) -> int:
        return sum(slot[1] for slot in self.namespaces.values())


@dataclass(frozen=True)
class NamespaceStatistics:
    """The cache's lookups of keys in one namespace (``"(none)"``: keys without one)."""

    hits: int
    """Lookups of a key in this namespace that returned a cached value."""
    misses: int
    """Lookups of a key in this namespace that found nothing usable."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, rounded to 4 places; 0.0 before any lookup."""
        return _rate(self.hits, self.misses)

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "hitRate": self.hit_rate}


@dataclass(frozen=True)
class RedisStatistics:
    """The primary tier (Redis, or whatever backend was given as ``primary``)."""

    configured: bool
    """Whether the cache has a primary at all (``False``: a memory-only cache)."""
    connected: bool
    """Whether the primary serves calls right now: ``False`` during an outage, until the
    failback, even if Redis already answers again."""
    used_memory: str | None = None
    """The Redis server's memory use, human-readable (``"1.2M"``; summed over a
    cluster's primaries); ``None`` while not connected or when the primary does not
    report it."""
    connected_clients: int | None = None
    """Clients connected to the Redis server, from every process (``INFO clients``);
    ``None`` while not connected or when the primary does not report it."""
    hits: int = 0
    """Reads of the primary by this process that found an entry (not the server's
    keyspace counters, which other software shares); 0 while not connected."""
    misses: int = 0
    """Reads of the primary by this process that found nothing; 0 while not connected."""
    used_memory_bytes: int | None = None
    """``used_memory`` as a number of bytes, for dashboards and alerts."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, rounded to 4 places; 0.0 before any lookup."""
        return _rate(self.hits, self.misses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "connected": self.connected,
            "usedMemory": self.used_memory,
            "usedMemoryBytes": self.used_memory_bytes,
            "connectedClients": self.connected_clients,
            "hits": self.hits,
            "misses": self.misses,
            "hitRate": self.hit_rate,
        }


@dataclass(frozen=True)
class MemoryStatistics:
    """The in-process fallback tier, counted since the cache was built.

    It is read only while it serves (an outage, or a memory-only cache): its ``hits``
    and ``misses`` are a part of the cache's lookups, not all of them.
    """

    hits: int
    """Reads that reached the memory backend and found a live entry."""
    misses: int
    """Reads that reached the memory backend and found nothing (or an expired entry)."""
    size: int
    """Entries held now (``entries`` in ``to_dict()`` too); emptied at each failover."""
    bytes: int
    """Bytes held now: keys and encoded values."""
    evictions: int
    """Entries dropped, least recently used first, to stay under ``memory_max_entries``
    or ``memory_max_bytes``."""
    expirations: int
    """Entries removed because their TTL ran out (found on a read or swept)."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, rounded to 4 places; 0.0 before any lookup."""
        return _rate(self.hits, self.misses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "size": self.size,
            "hitRate": self.hit_rate,
            "entries": self.size,
            "bytes": self.bytes,
            "evictions": self.evictions,
            "expirations": self.expirations,
        }


@dataclass(frozen=True)
class LoaderStatistics:
    """What ``get_or_set`` and ``@cache`` did on misses."""

    calls: int
    """Loader (factory, decorated function) runs, background refreshes included."""
    errors: int
    """Loader runs that raised; nothing was cached for them."""
    coalesced: int
    """Callers served by a load another caller had started (single flight): loader
    runs saved in this process."""
    refreshes: int = 0
    """Background refreshes started (``refresh_after``, ``early_refresh``)."""
    refresh_failures: int = 0
    """Background refreshes that failed; the cached value kept being served."""
    stale_served: int = 0
    """Times an expired value was returned because its loader failed
    (``stale_if_error``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "coalesced": self.coalesced,
            "refreshes": self.refreshes,
            "refreshFailures": self.refresh_failures,
            "staleServed": self.stale_served,
        }


@dataclass(frozen=True)
class FailoverStatistics:
    """Outages of the primary and what the cache did about them."""

    state: str = "closed"
    """``"closed"``: the primary serves; ``"open"``: the fallback serves during an
    outage; ``"memory-only"``: there is no primary."""
    failovers: int = 0
    """Switches from the primary to the fallback."""
    failbacks: int = 0
    """Switches back to the primary once it answered and the outage's changes were
    replayed on it."""
    time_on_fallback: float = 0.0
    """Seconds spent serving from the fallback in place of the primary, the current
    outage included."""
    errors: int = 0
    """Errors of the primary: every failed call (whether or not it caused a failover)
    and every failed probe during an outage."""
    last_error: str | None = None
    """The last of those errors (``"Type: message"``), kept after recovery; ``None``
    before any."""
    last_error_at: float | None = None
    """Wall-clock time (``time.time()``) of ``last_error``; ``None`` before any error."""


@dataclass(frozen=True)
class CacheStatistics:
    """A snapshot of the cache; `to_dict()` gives the JSON the admin route serves."""

    backend: str
    """Name of the backend serving calls now: ``"redis"``, or ``"memory"`` during an
    outage and in a memory-only cache."""
    redis: RedisStatistics
    """The primary tier."""
    memory: MemoryStatistics
    """The fallback tier."""
    hits: int = 0
    """Lookups (``get``, each key of ``get_many``, ``get_or_set``, ``@cache``) that
    returned a cached value, whichever tier held it."""
    misses: int = 0
    """Lookups that found nothing usable: absent, expired, undecodable, or refused by
    the server (``command_errors``)."""
    decode_errors: int = 0
    """Entries found that could not be decoded (foreign data, another serializer),
    counted as misses."""
    command_errors: int = 0
    """Reads the server refused for the key (``WRONGTYPE``, say), counted as misses."""
    namespaces: Mapping[str, NamespaceStatistics] = field(default_factory=dict)
    """``hits`` and ``misses`` split by namespace; keys without one under ``"(none)"``."""
    loader: LoaderStatistics = field(default_factory=lambda: LoaderStatistics(0, 0, 0))
    """What loads on misses did."""
    failover: FailoverStatistics = field(default_factory=FailoverStatistics)
    """Outages, failovers and failbacks."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, rounded to 4 places; 0.0 before any lookup."""
        return _rate(self.hits, self.misses)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of SPEC §7, as ``/cache/stats`` serves it (camelCase keys)."""
        failover = self.failover
        return {
            "backend": self.backend,
            "redis": self.redis.to_dict(),
            "memory": self.memory.to_dict(),
            "hits": self.hits,
            "misses": self.misses,
            "hitRate": self.hit_rate,
            "evictions": self.memory.evictions,
            "failovers": failover.failovers,
            "failbacks": failover.failbacks,
            "timeOnFallback": round(failover.time_on_fallback, 3),
            "breakerState": failover.state,
            "backendErrors": failover.errors,
            "lastBackendError": failover.last_error,
            "lastBackendErrorAt": failover.last_error_at,
            "decodeErrors": self.decode_errors,
            "commandErrors": self.command_errors,
            "namespaces": {name: ns.to_dict() for name, ns in sorted(self.namespaces.items())},
            "loader": self.loader.to_dict(),
        }


@dataclass(frozen=True)
class HealthReport:
    """What ``FallbackCache.health()`` found; ``to_dict()`` is what ``/cache/health`` serves.

    ``status`` is ``"ok"`` when the configured tiers all serve, ``"degraded"`` when the
    cache answers from memory because its primary does not.
    """

    status: str
    """``"ok"`` or ``"degraded"`` (see above)."""
    backend: str
    """Name of the backend serving calls now."""
    breaker_state: str
    """``"closed"``, ``"open"`` (an outage) or ``"memory-only"``."""
    redis_configured: bool
    """Whether the cache has a primary."""
    redis_reachable: bool | None
    """Whether the primary answered this health check's PING; ``None`` without one."""
    redis_latency: float | None = None
    """That PING's round trip in seconds; ``None`` when it did not answer."""
    redis_error: str | None = None
    """Why the PING failed (``"Type: message"``); ``None`` when it answered."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``/cache/health`` serves (latency in milliseconds)."""
        latency = self.redis_latency
        return {
            "status": self.status,
            "backend": self.backend,
            "breakerState": self.breaker_state,
            "redis": {
                "configured": self.redis_configured,
                "reachable": self.redis_reachable,
                "latencyMs": None if latency is None else round(latency * 1000, 3),
                "error": self.redis_error,
            },
        }
