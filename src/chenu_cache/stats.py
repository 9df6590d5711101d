"""Counters kept by the facade and the statistics object built from them (SPEC §7)."""

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
    hits: int
    misses: int

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
    connected: bool
    used_memory: str | None = None
    connected_clients: int | None = None
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, rounded to 4 places; 0.0 before any lookup."""
        return _rate(self.hits, self.misses)

    def to_dict(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "connected": self.connected,
            "usedMemory": self.used_memory,
            "connectedClients": self.connected_clients,
            "hits": self.hits,
            "misses": self.misses,
            "hitRate": self.hit_rate,
        }


@dataclass(frozen=True)
class MemoryStatistics:
    hits: int
    misses: int
    size: int
    bytes: int
    evictions: int
    expirations: int

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
            "bytes": self.bytes,
            "evictions": self.evictions,
            "expirations": self.expirations,
        }


@dataclass(frozen=True)
class LoaderStatistics:
    """What ``get_or_set`` and ``@cache`` did on misses."""

    calls: int
    errors: int
    coalesced: int
    refreshes: int = 0
    refresh_failures: int = 0
    stale_served: int = 0

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
    state: str = "closed"
    failovers: int = 0
    failbacks: int = 0
    time_on_fallback: float = 0.0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    """Wall-clock time (``time.time()``) of ``last_error``; ``None`` before any error."""


@dataclass(frozen=True)
class CacheStatistics:
    """A snapshot of the cache; `to_dict()` gives the JSON the admin route serves."""

    backend: str
    redis: RedisStatistics
    memory: MemoryStatistics
    hits: int = 0
    misses: int = 0
    decode_errors: int = 0
    command_errors: int = 0
    namespaces: Mapping[str, NamespaceStatistics] = field(default_factory=dict)
    loader: LoaderStatistics = field(default_factory=lambda: LoaderStatistics(0, 0, 0))
    failover: FailoverStatistics = field(default_factory=FailoverStatistics)

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
    backend: str
    breaker_state: str
    redis_configured: bool
    redis_reachable: bool | None
    redis_latency: float | None = None
    redis_error: str | None = None

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
