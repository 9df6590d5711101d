"""Prometheus metrics for chenu-cache caches, read from ``cache.statistics()`` at scrape time.

Needs the ``prometheus`` extra (``pip install "chenu-cache[prometheus]"``)::

    from prometheus_client import start_http_server
    from chenu_cache import cache_service
    from chenu_cache.contrib.prometheus import register

    register(cache_service)                    # on prometheus_client's REGISTRY
    register(sessions_cache, name="sessions")  # a second cache: same families, cache="sessions"
    start_http_server(9100)

The collector does nothing until a scrape: the cache counts as it always does, and each
scrape takes one synchronous, I/O-free snapshot per cache. Labels are bounded: ``cache``
(names you give), ``namespace`` (declared namespaces, ``"(none)"``, and at most
``max_namespaces`` others; the rest summed under ``"(other)"``), and small fixed sets
(``result``, ``tier``, ``reason``, ``state``). Keys are never labels.

Scraped from another thread (``start_http_server``), the snapshot is taken on the event
loop that uses the cache, because the memory tier tidies expired entries while it is
counted. That loop is the one running when `register` (or `ChenuCacheCollector.add`) is
called, or the ``loop=`` given. This module uses only chenu-cache's public API.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised by hiding prometheus_client
    raise ImportError(
        "chenu_cache.contrib.prometheus needs prometheus_client: "
        'pip install "chenu-cache[prometheus]"'
    ) from exc

from chenu_cache import CacheStatistics, ConfigurationError, FallbackCache

from . import _observe
from ._observe import DEFAULT_TIMEOUT, WatchedCache, breaker_states, check_options, figure

__all__ = [
    "DEFAULT_MAX_NAMESPACES",
    "METRIC_NAMES",
    "OTHER_NAMESPACES",
    "ChenuCacheCollector",
    "register",
    "unregister",
]

DEFAULT_MAX_NAMESPACES = _observe.DEFAULT_MAX_NAMESPACES
"""Undeclared namespaces that get a ``namespace`` label value of their own, per cache."""

OTHER_NAMESPACES = _observe.OTHER_NAMESPACES
"""The ``namespace`` label value that sums the namespaces past ``max_namespaces``."""

# name, help, type, labels besides ``cache``, and the statistic that is its one series
# (None: `_add` puts its series itself). Names are given without ``_total``:
# prometheus_client adds it to counters (and `describe` must match `collect`).
_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...], str | None], ...] = (
    (
        "chenu_cache_statistics_up",
        "1 if this scrape read the cache's statistics, 0 if its event loop did not answer "
        "in time (its other series are then absent)",
        "gauge",
        (),
        None,
    ),
    (
        "chenu_cache_gets",
        "Lookups (get, each key of get_many, get_or_set, decorated calls) by namespace and "
        "result, whichever tier answered",
        "counter",
        ("namespace", "result"),
        None,
    ),
    (
        "chenu_cache_tier_reads",
        "Reads that reached a tier (redis: while it serves; memory: while it serves)",
        "counter",
        ("tier", "result"),
        None,
    ),
    (
        "chenu_cache_read_errors",
        "Entries found but unusable, counted as misses: undecodable (decode), not of the "
        "requested type (type), refused by the server (command)",
        "counter",
        ("reason",),
        None,
    ),
    (
        "chenu_cache_stale_by_tag",
        "Entries found whose tags were invalidated after they were loaded (misses)",
        "counter",
        (),
        "stale_by_tag",
    ),
    (
        "chenu_cache_tag_invalidations",
        "Tags invalidated by invalidate_tags",
        "counter",
        (),
        "tag_invalidations",
    ),
    (
        "chenu_cache_loads",
        "Loader runs (get_or_set factories, decorated functions), background refreshes included",
        "counter",
        (),
        "loader.calls",
    ),
    ("chenu_cache_load_errors", "Loader runs that raised", "counter", (), "loader.errors"),
    (
        "chenu_cache_loads_coalesced",
        "Callers served by a load another caller had started (single flight)",
        "counter",
        (),
        "loader.coalesced",
    ),
    (
        "chenu_cache_refreshes",
        "Background refreshes started (refresh_after, early_refresh)",
        "counter",
        (),
        "loader.refreshes",
    ),
    (
        "chenu_cache_refresh_failures",
        "Background refreshes that failed",
        "counter",
        (),
        "loader.refresh_failures",
    ),
    (
        "chenu_cache_loads_fenced",
        "Loads returned to their callers but not stored: overtaken by an invalidation or a write",
        "counter",
        (),
        "loader.fenced",
    ),
    (
        "chenu_cache_loads_not_cached",
        "Loads returned but not stored: refused by cache_if, or not of the requested type",
        "counter",
        (),
        "loader.not_cached",
    ),
    (
        "chenu_cache_stale_served",
        "Expired values served, by reason (error: the loader failed, stale_if_error)",
        "counter",
        ("reason",),
        None,
    ),
    ("chenu_cache_near_hits", "Reads served by the near cache", "counter", (), "near_cache.hits"),
    (
        "chenu_cache_near_misses",
        "Reads that went past the near cache to Redis and may be kept near",
        "counter",
        (),
        "near_cache.misses",
    ),
    (
        "chenu_cache_near_bypassed",
        "Reads that went to Redis unkept: the near cache's coherence could not be vouched for",
        "counter",
        (),
        "near_cache.bypassed",
    ),
    (
        "chenu_cache_near_invalidations",
        "Keys Redis reported changed to the near cache",
        "counter",
        (),
        "near_cache.invalidations",
    ),
    (
        "chenu_cache_near_flushes",
        "Times the near cache was emptied (tracking lost or renewed, FLUSHDB, failover)",
        "counter",
        (),
        "near_cache.flushes",
    ),
    (
        "chenu_cache_near_evictions",
        "Near cache entries dropped (least recently used) to stay within its bounds",
        "counter",
        (),
        "near_cache.evictions",
    ),
    ("chenu_cache_near_entries", "Entries held by the near cache", "gauge", (), "near_cache.size"),
    ("chenu_cache_near_bytes", "Bytes held by the near cache", "gauge", (), "near_cache.bytes"),
    (
        "chenu_cache_near_tracking",
        "1 while the near cache serves (its tracking link is up), else 0",
        "gauge",
        (),
        "near_cache.tracking",
    ),
    ("chenu_cache_memory_entries", "Entries held by the memory tier", "gauge", (), None),
    (
        "chenu_cache_memory_bytes",
        "Bytes held by the memory tier (keys and encoded values)",
        "gauge",
        (),
        None,
    ),
    (
        "chenu_cache_memory_evictions",
        "Memory tier entries dropped (least recently used) to stay under its limits",
        "counter",
        (),
        None,
    ),
    (
        "chenu_cache_memory_expirations",
        "Memory tier entries removed because their TTL ran out",
        "counter",
        (),
        None,
    ),
    (
        "chenu_cache_breaker_state",
        "1 for the circuit breaker's current state (closed: Redis serves; open: memory "
        "serves during an outage; memory-only: no Redis configured), 0 for the others",
        "gauge",
        ("state",),
        None,
    ),
    (
        "chenu_cache_redis_connected",
        "1 while Redis serves calls, 0 during an outage (absent without Redis)",
        "gauge",
        (),
        None,
    ),
    (
        "chenu_cache_failovers",
        "Switches from Redis to the memory tier",
        "counter",
        (),
        "failover.failovers",
    ),
    (
        "chenu_cache_failbacks",
        "Switches back to Redis after the outage's changes were replayed",
        "counter",
        (),
        "failover.failbacks",
    ),
    (
        "chenu_cache_fallback_seconds",
        "Seconds spent serving from the memory tier in place of Redis, the current outage included",
        "counter",
        (),
        "failover.time_on_fallback",
    ),
    (
        "chenu_cache_backend_errors",
        "Errors of Redis: failed calls and failed probes during an outage",
        "counter",
        (),
        "failover.errors",
    ),
    (
        "chenu_cache_last_backend_error_timestamp_seconds",
        "When the last Redis error happened, in seconds since the epoch (absent before any)",
        "gauge",
        (),
        "failover.last_error_at",
    ),
)


LOAD_DURATION = "chenu_cache_load_duration_seconds"


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _durations_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        LOAD_DURATION,
        "How long loader runs took (get_or_set factories, decorated functions, "
        "background refreshes; failed runs included)",
        labels=("cache",),
    )


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    made: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for name, text, kind, labels, _ in _FAMILIES:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        made[name] = cls(name, text, labels=("cache", *labels))
    return made


def _add(
    families: Mapping[str, GaugeMetricFamily | CounterMetricFamily],
    source: WatchedCache,
    stats: CacheStatistics,
) -> None:
    cache = source.name

    def put(name: str, value: float, *labels: str) -> None:
        families[name].add_metric([cache, *labels], value)

    for namespace, hits, misses in source.namespaces(stats.namespaces):
        put("chenu_cache_gets", hits, namespace, "hit")
        put("chenu_cache_gets", misses, namespace, "miss")
    redis = stats.redis
    if redis.configured:
        hits, misses = source.redis_reads(stats)
        put("chenu_cache_tier_reads", hits, "redis", "hit")
        put("chenu_cache_tier_reads", misses, "redis", "miss")
        put("chenu_cache_redis_connected", 1 if redis.connected else 0)
    memory = stats.memory
    put("chenu_cache_tier_reads", memory.hits, "memory", "hit")
    put("chenu_cache_tier_reads", memory.misses, "memory", "miss")
    put("chenu_cache_read_errors", stats.decode_errors, "decode")
    put("chenu_cache_read_errors", stats.type_errors, "type")
    put("chenu_cache_read_errors", stats.command_errors, "command")
    put("chenu_cache_stale_served", stats.loader.stale_served, "error")
    put("chenu_cache_memory_entries", memory.size)
    put("chenu_cache_memory_bytes", memory.bytes)
    put("chenu_cache_memory_evictions", memory.evictions)
    put("chenu_cache_memory_expirations", memory.expirations)
    failover = stats.failover
    for state in breaker_states(failover.state):
        put("chenu_cache_breaker_state", 1 if state == failover.state else 0, state)
    for name, _, _, _, path in _FAMILIES:
        if path is not None and (reading := figure(stats, path)) is not None:
            put(name, reading)


class ChenuCacheCollector:
    """A Prometheus collector for one or more caches: one snapshot per cache per scrape.

    ``ChenuCacheCollector(cache, name="default")`` watches ``cache``; `add` watches more
    (each under its own ``cache`` label value) and `remove` stops. Register it once per
    registry (`register` does that for you). Nothing runs between scrapes.
    """

    def __init__(
        self,
        cache: FallbackCache | None = None,
        *,
        name: str = "default",
        max_namespaces: int = DEFAULT_MAX_NAMESPACES,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, WatchedCache] = {}
        if cache is not None:
            self.add(cache, name=name, max_namespaces=max_namespaces, loop=loop, timeout=timeout)

    def add(
        self,
        cache: FallbackCache,
        *,
        name: str = "default",
        max_namespaces: int = DEFAULT_MAX_NAMESPACES,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Watch ``cache`` under the label ``cache=name``.

        ``max_namespaces``: undeclared namespaces labelled by name (declared ones and
        ``"(none)"`` always are); later ones are summed under ``"(other)"``. ``loop``:
        the event loop the cache runs on, where a scrape from another thread takes its
        snapshot (default: the loop running now, if any). ``timeout``: seconds a scrape
        waits for that loop before reporting ``chenu_cache_statistics_up 0``.
        """
        check_options(cache, name, max_namespaces, timeout)
        source = WatchedCache(cache, name, max_namespaces, loop, timeout)
        with self._lock:
            if name in self._sources:
                raise ConfigurationError(f"a cache named {name!r} is already collected")
            if any(s.cache is cache for s in self._sources.values()):
                raise ConfigurationError("this cache is already collected under another name")
            self._sources[name] = source

    def remove(self, name: str = "default") -> None:
        """Stop watching the cache labelled ``name``; its series disappear."""
        with self._lock:
            if self._sources.pop(name, None) is None:
                raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """The ``cache`` label values collected, in the order they were added."""
        with self._lock:
            return tuple(self._sources)

    def describe(self) -> list[Metric]:
        """The metric families this collector yields (what a registry checks for clashes)."""
        return [*_families().values(), _durations_family()]

    def collect(self) -> list[Metric]:
        """The metric families with one snapshot of each cache (called per scrape)."""
        with self._lock:
            sources = list(self._sources.values())
        families = _families()
        up = families["chenu_cache_statistics_up"]
        durations = _durations_family()
        for source in sources:
            stats = source.statistics()
            if stats is None:
                up.add_metric([source.name], 0)
                continue
            up.add_metric([source.name], 1)
            with self._lock:  # the label bookkeeping, if two scrapes overlap
                _add(families, source, stats)
            # A copy of a few integers, safe from any thread: no need for the loop.
            loads = source.cache.load_durations()
            buckets = [(_le(bound), count) for bound, count in loads.cumulative()]
            durations.add_metric([source.name], buckets, loads.total_seconds)
        return [*families.values(), durations]


_registered: weakref.WeakKeyDictionary[CollectorRegistry, ChenuCacheCollector] = (
    weakref.WeakKeyDictionary()
)
_registering = threading.Lock()


def register(
    cache: FallbackCache,
    registry: CollectorRegistry = REGISTRY,
    *,
    name: str = "default",
    max_namespaces: int = DEFAULT_MAX_NAMESPACES,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ChenuCacheCollector:
    """Expose ``cache``'s statistics on ``registry`` under ``cache=name``; return the collector.

    Every cache registered on one registry shares one collector (a registry refuses two
    collectors that yield the same families). Options as in `ChenuCacheCollector.add`.
    """
    with _registering:
        collector = _registered.get(registry)
        if collector is None:
            collector = ChenuCacheCollector()
            collector.add(
                cache, name=name, max_namespaces=max_namespaces, loop=loop, timeout=timeout
            )
            registry.register(collector)
            _registered[registry] = collector
        else:
            collector.add(
                cache, name=name, max_namespaces=max_namespaces, loop=loop, timeout=timeout
            )
    return collector


def unregister(name: str = "default", registry: CollectorRegistry = REGISTRY) -> None:
    """Stop exposing the cache registered as ``name``; the last one takes the collector
    off the registry."""
    with _registering:
        collector = _registered.get(registry)
        if collector is None:
            raise KeyError(name)
        collector.remove(name)
        if not collector.names:
            registry.unregister(collector)
            del _registered[registry]


METRIC_NAMES: tuple[str, ...] = (
    *(name + ("_total" if kind == "counter" else "") for name, _, kind, _, _ in _FAMILIES),
    LOAD_DURATION,
)
"""The sample names this module exposes (counters with their ``_total``)."""
