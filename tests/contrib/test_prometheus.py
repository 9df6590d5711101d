"""chenu_cache.contrib.prometheus (SPEC §18): the collector, read back as a scraper reads it.

Every test registers on a `CollectorRegistry` of its own and parses the text exposition
with prometheus_client's parser. Caches run on memory, on a real Redis, on a redis-server
the test kills and restarts, and on a port nothing listens on. Without prometheus_client
the module skips, except under ``CI=true``, where the import error fails the run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import CacheStatistics, ConfigurationError, FallbackCache, MemoryBackend
from tests.conftest import FakeClock, eventually
from tests.redis_server import RedisServer, free_port


def _optional(module: str) -> Any:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return importlib.import_module(module)  # CI must never pass by skipping
    return pytest.importorskip(module)


_optional("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from chenu_cache.contrib.prometheus import (  # noqa: E402
    METRIC_NAMES,
    OTHER_NAMESPACES,
    ChenuCacheCollector,
    register,
    unregister,
)

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the text exposition, as a scraper parses it."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, lab), v in samples.items() if n == name and wanted <= lab]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def before(samples: Samples, name: str, **labels: str) -> float:
    """As `value`, 0 for a series not there yet (a namespace before its first lookup)."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and wanted <= lab)


def absent(samples: Samples, name: str) -> bool:
    return not any(n == name for n, _ in samples)


class Boom(Exception):
    pass


async def workout(cache: FallbackCache, wall: FakeClock) -> None:
    """Moves every counter a cache keeps on any backend (command errors aside)."""
    await cache.set("user:1", {"id": 1})
    assert await cache.get("user:1") == {"id": 1}
    assert await cache.get("2", namespace="user") is None
    assert await cache.get("plain") is None
    assert await cache.get_many(["user:1", "user:3"]) == {"user:1": {"id": 1}}
    assert await cache.get("user:1", type=int) is None  # a type error, read as a miss
    await cache.backend.set("junk", b"{not json", None)
    assert await cache.get("junk") is None  # a decode error
    assert await cache.get_or_set("user:9", lambda: 9) == 9

    async def failing() -> int:
        raise Boom("loader down")

    with pytest.raises(Boom):
        await cache.get_or_set("user:err", failing)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "slow"

    loads = [asyncio.create_task(cache.get_or_set("fence", slow)) for _ in range(3)]
    await started.wait()
    await cache.invalidate("fence")  # overtakes the running load: it stores nothing
    release.set()
    assert await asyncio.gather(*loads) == ["slow"] * 3  # one run, two callers joined it
    assert await cache.get_or_set("nc", lambda: None, cache_if=lambda v: v is not None) is None
    await cache.set("tagged", 1, tags=["grp"])
    await cache.invalidate_tags("grp")
    assert await cache.get("tagged") is None  # stale by its tag
    refreshed = 0

    def once() -> str:
        nonlocal refreshed
        refreshed += 1
        if refreshed > 1:
            raise Boom("refresh failed")
        return "v"

    await cache.get_or_set("fresh", lambda: "f", ttl=60, refresh_after=10)
    await cache.get_or_set("refail", once, ttl=60, refresh_after=10)
    await cache.get_or_set("stale", lambda: "s", ttl=10, stale_if_error=30)
    wall.advance(15)
    assert await cache.get_or_set("fresh", lambda: "f2", ttl=60, refresh_after=10) == "f"
    assert await cache.get_or_set("refail", once, ttl=60, refresh_after=10) == "v"
    assert await cache.get_or_set("stale", failing, ttl=10, stale_if_error=30) == "s"

    async def refreshes_done() -> bool:
        loader = cache.statistics().loader
        return loader.refreshes == 2 and loader.refresh_failures == 1

    await eventually(refreshes_done)


MOVED_EVERYWHERE = [
    ("chenu_cache_gets_total", {"namespace": "user", "result": "hit"}),
    ("chenu_cache_gets_total", {"namespace": "user", "result": "miss"}),
    ("chenu_cache_gets_total", {"namespace": "(none)", "result": "miss"}),
    ("chenu_cache_read_errors_total", {"reason": "decode"}),
    ("chenu_cache_read_errors_total", {"reason": "type"}),
    ("chenu_cache_stale_by_tag_total", {}),
    ("chenu_cache_tag_invalidations_total", {}),
    ("chenu_cache_loads_total", {}),
    ("chenu_cache_load_errors_total", {}),
    ("chenu_cache_loads_coalesced_total", {}),
    ("chenu_cache_refreshes_total", {}),
    ("chenu_cache_refresh_failures_total", {}),
    ("chenu_cache_loads_fenced_total", {}),
    ("chenu_cache_loads_not_cached_total", {}),
    ("chenu_cache_stale_served_total", {"reason": "error"}),
]


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


# -- every figure moves ------------------------------------------------------------------


async def test_memory_cache_every_family_moves(
    registry: CollectorRegistry, wall: FakeClock
) -> None:
    ticks = FakeClock()
    memory = MemoryBackend(clock=ticks, max_entries=40)
    cache = FallbackCache(read_env=False, fallback=memory, clock=wall)
    register(cache, registry, name="mem")
    start = scrape(registry)
    await workout(cache, wall)
    for i in range(50):  # past max_entries: the oldest go
        await cache.set(f"bulk:{i}", i)
    await cache.set("short", 1, ttl=1)
    ticks.advance(2)
    assert await cache.get("short") is None  # found expired
    after = scrape(registry)
    moved = [
        *MOVED_EVERYWHERE,
        ("chenu_cache_tier_reads_total", {"tier": "memory", "result": "hit"}),
        ("chenu_cache_tier_reads_total", {"tier": "memory", "result": "miss"}),
        ("chenu_cache_memory_evictions_total", {}),
        ("chenu_cache_memory_expirations_total", {}),
    ]
    for name, labels in moved:
        assert value(after, name, cache="mem", **labels) > before(start, name, **labels), name
    memory = cache.statistics().memory
    assert value(after, "chenu_cache_memory_entries", cache="mem") == memory.size == 39
    assert value(after, "chenu_cache_memory_bytes") == memory.bytes > 0
    assert value(after, "chenu_cache_loads_coalesced_total") == 2
    assert value(after, "chenu_cache_loads_fenced_total") == 1
    assert value(after, "chenu_cache_breaker_state", state="memory-only") == 1
    assert value(after, "chenu_cache_breaker_state", state="closed") == 0
    assert value(after, "chenu_cache_statistics_up") == 1
    # No Redis: no Redis series, rather than zeros that look like an idle server.
    assert absent(after, "chenu_cache_redis_connected")
    assert not any(dict(labels).get("tier") == "redis" for _, labels in after)
    # The lookups the cache counted are all there, split by namespace.
    stats = cache.statistics()
    assert value(after, "chenu_cache_gets_total", result="hit") == stats.hits
    assert value(after, "chenu_cache_gets_total", result="miss") == stats.misses


async def test_redis_cache_every_family_moves(
    registry: CollectorRegistry, redis_url: str, prefix: str, wall: FakeClock
) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, clock=wall, operation_timeout=2.0)
    await cache.initialize()
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        register(cache, registry)
        start = scrape(registry)
        await workout(cache, wall)
        await raw.lpush(prefix + "user:list", "x")
        assert await cache.get("user:list") is None  # WRONGTYPE: refused, a miss
        after = scrape(registry)
        moved = [
            *MOVED_EVERYWHERE,
            ("chenu_cache_tier_reads_total", {"tier": "redis", "result": "hit"}),
            ("chenu_cache_tier_reads_total", {"tier": "redis", "result": "miss"}),
            ("chenu_cache_read_errors_total", {"reason": "command"}),
        ]
        for name, labels in moved:
            assert value(after, name, **labels) > before(start, name, **labels), name
        assert value(after, "chenu_cache_redis_connected") == 1
        assert value(after, "chenu_cache_breaker_state", state="closed") == 1
        assert value(after, "chenu_cache_failovers_total") == 0
        # While Redis serves, the memory tier is not read.
        assert value(after, "chenu_cache_tier_reads_total", tier="memory") == 0
    finally:
        await raw.delete(prefix + "user:list")
        await raw.aclose()
        await cache.clear()
        await cache.close()


async def test_outage_and_recovery_on_a_real_server(
    registry: CollectorRegistry, server: RedisServer
) -> None:
    cache = FallbackCache(
        redis_url=server.url,
        prefix="prom:",
        read_env=False,
        operation_timeout=0.2,
        probe_interval=0.05,
        probe_max_interval=0.3,
        recent_window=0,
    )
    await cache.initialize()
    try:
        register(cache, registry)
        await cache.set("user:1", 1)
        await cache.get("user:1")
        await cache.get("user:2")
        up = scrape(registry)
        assert value(up, "chenu_cache_tier_reads_total", tier="redis", result="hit") == 1
        assert absent(up, "chenu_cache_last_backend_error_timestamp_seconds")

        server.kill()
        await cache.get("user:1")  # fails over; no error reaches the caller
        assert cache.backend.name == "memory"
        await cache.set("user:3", 3)
        await cache.get("user:3")
        await asyncio.sleep(0.05)  # some time on the fallback
        down = scrape(registry)
        assert value(down, "chenu_cache_breaker_state", state="open") == 1
        assert value(down, "chenu_cache_breaker_state", state="closed") == 0
        assert value(down, "chenu_cache_redis_connected") == 0
        assert value(down, "chenu_cache_failovers_total") == 1
        assert value(down, "chenu_cache_backend_errors_total") >= 1
        assert value(down, "chenu_cache_fallback_seconds_total") > 0
        assert value(down, "chenu_cache_last_backend_error_timestamp_seconds") > 1e9
        assert value(down, "chenu_cache_tier_reads_total", tier="memory", result="hit") >= 1
        # The statistics say 0 Redis reads while it does not serve; the counters hold.
        assert cache.statistics().redis.hits == 0
        assert value(down, "chenu_cache_tier_reads_total", tier="redis", result="hit") == 1

        server.start()

        async def back() -> bool:
            return cache.backend.name == "redis"

        await eventually(back, timeout=10)
        await cache.get("user:3")
        recovered = scrape(registry)
        assert value(recovered, "chenu_cache_failbacks_total") == 1
        assert value(recovered, "chenu_cache_breaker_state", state="closed") == 1
        assert value(recovered, "chenu_cache_redis_connected") == 1
        seconds = value(recovered, "chenu_cache_fallback_seconds_total")
        assert seconds >= value(down, "chenu_cache_fallback_seconds_total")
        assert value(recovered, "chenu_cache_tier_reads_total", tier="redis") >= 2
        # Counters never went down across the outage.
        for key, figure in up.items():
            if key[0].endswith("_total"):
                assert recovered[key] >= figure, key
    finally:
        await cache.close()


async def test_a_redis_nobody_answers(registry: CollectorRegistry) -> None:
    cache = FallbackCache(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        read_env=False,
        operation_timeout=0.2,
        connect_timeout=0.2,
    )
    await cache.initialize()  # starts on memory
    try:
        register(cache, registry)
        await cache.set("user:1", 1)
        assert await cache.get("user:1") == 1
        samples = scrape(registry)
        assert value(samples, "chenu_cache_breaker_state", state="open") == 1
        assert value(samples, "chenu_cache_redis_connected") == 0
        assert value(samples, "chenu_cache_backend_errors_total") >= 1
        assert value(samples, "chenu_cache_tier_reads_total", tier="redis") == 0
        assert value(samples, "chenu_cache_tier_reads_total", tier="memory", result="hit") == 1
        assert value(samples, "chenu_cache_gets_total", namespace="user", result="hit") == 1
        assert value(samples, "chenu_cache_last_backend_error_timestamp_seconds") > 1e9
    finally:
        await cache.close()


# -- bounded labels ----------------------------------------------------------------------


async def test_labels_stay_bounded_under_10000_distinct_keys(
    registry: CollectorRegistry,
) -> None:
    cache = FallbackCache(read_env=False, memory_max_entries=100)
    register(cache, registry, max_namespaces=20)
    for i in range(10_000):  # keys without a namespace, then keys that each bring one
        await cache.get(f"k{i}")
        await cache.get(f"n{i}:k")
    await cache.set("user:1", 1)
    await cache.get("user:1")
    samples = scrape(registry)
    gets = {
        dict(labels)["namespace"] for name, labels in samples if name == "chenu_cache_gets_total"
    }
    # declared namespaces seen (user), "(none)", 20 others, and "(other)"
    assert len(gets) == 23
    assert {"user", "(none)", OTHER_NAMESPACES} <= gets
    values = {v for _, labels in samples for _, v in labels}
    assert not any(re.fullmatch(r"(n\d+:)?k\d*", v) for v in values), "a key became a label"
    stats = cache.statistics()
    assert len(stats.namespaces) == 10_002  # the cache itself keeps them all
    assert value(samples, "chenu_cache_gets_total", result="miss") == stats.misses
    assert value(samples, "chenu_cache_gets_total", namespace=OTHER_NAMESPACES) == 10_000 - 20
    # Labels are kept for good: later namespaces go to "(other)", which only grows.
    await cache.get("late:k")
    again = scrape(registry)
    assert {dict(lab)["namespace"] for n, lab in again if n == "chenu_cache_gets_total"} == gets
    other = value(again, "chenu_cache_gets_total", namespace=OTHER_NAMESPACES)
    assert other == value(samples, "chenu_cache_gets_total", namespace=OTHER_NAMESPACES) + 1
    series = len([1 for name, _ in again if name.startswith("chenu_cache_")])
    assert series < 100


async def test_declared_namespaces_always_get_their_label(registry: CollectorRegistry) -> None:
    cache = FallbackCache(read_env=False, namespaces={"orders": 60})
    register(cache, registry, max_namespaces=0)
    await cache.get("x:1")
    await cache.get("orders:1")
    await cache.get("user:1")
    await cache.get("1")
    labels = {
        dict(lab)["namespace"] for n, lab in scrape(registry) if n == "chenu_cache_gets_total"
    }
    assert labels == {"orders", "user", "(none)", OTHER_NAMESPACES}


# -- registering -------------------------------------------------------------------------


async def test_several_caches_share_one_collector(registry: CollectorRegistry) -> None:
    first, second = FallbackCache(read_env=False), FallbackCache(read_env=False)
    collector = register(first, registry, name="users")
    assert register(second, registry, name="sessions") is collector
    assert collector.names == ("users", "sessions")
    await first.set("a", 1)
    await first.get("a")
    await second.get("a")
    samples = scrape(registry)
    assert value(samples, "chenu_cache_gets_total", cache="users", result="hit") == 1
    assert value(samples, "chenu_cache_gets_total", cache="sessions", result="miss") == 1
    assert value(samples, "chenu_cache_statistics_up", cache="sessions") == 1
    with pytest.raises(ConfigurationError):
        register(FallbackCache(read_env=False), registry, name="users")
    with pytest.raises(ConfigurationError):
        register(first, registry, name="again")
    unregister("sessions", registry)
    assert not any(dict(lab).get("cache") == "sessions" for _, lab in scrape(registry))
    unregister("users", registry)
    assert scrape(registry) == {}
    with pytest.raises(KeyError):
        unregister("users", registry)
    # The registry is free again, for a collector of one's own.
    registry.register(ChenuCacheCollector(first, name="users"))
    assert value(scrape(registry), "chenu_cache_gets_total", cache="users", result="hit") == 1


@pytest.mark.parametrize(
    "options",
    [{"name": ""}, {"max_namespaces": -1}, {"max_namespaces": 1.5}, {"timeout": 0}],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ChenuCacheCollector(FallbackCache(read_env=False), **options)


def test_registering_changes_nothing_on_the_cache(registry: CollectorRegistry) -> None:
    cache = FallbackCache(read_env=False)
    before = dict(vars(cache))
    register(cache, registry)
    scrape(registry)
    assert vars(cache).keys() == before.keys()
    assert all(vars(cache)[name] is before[name] for name in before)


# -- scrapes from another thread ---------------------------------------------------------


async def test_a_scrape_from_another_thread_reads_on_the_loop(
    registry: CollectorRegistry,
) -> None:
    cache = FallbackCache(read_env=False)
    register(cache, registry, timeout=0.3)  # inside the loop: the collector knows it
    await cache.set("user:1", 1)
    await cache.get("user:1")
    taken_on: list[threading.Thread] = []
    original = cache.statistics

    def spy() -> CacheStatistics:
        taken_on.append(threading.current_thread())
        return original()

    cache.statistics = spy  # type: ignore[method-assign]
    text = await asyncio.to_thread(lambda: generate_latest(registry).decode())
    assert 'chenu_cache_gets_total{cache="default",namespace="user",result="hit"} 1.0' in text
    assert taken_on == [threading.main_thread()]

    # A loop that does not answer in time: the scrape says so instead of hanging.
    result: list[str] = []
    scraper = threading.Thread(target=lambda: result.append(generate_latest(registry).decode()))
    scraper.start()
    scraper.join()  # blocks the loop until the scrape gave up
    assert 'chenu_cache_statistics_up{cache="default"} 0.0' in result[0]
    assert "chenu_cache_gets_total{" not in result[0]
    await asyncio.sleep(0)  # the abandoned snapshot request runs, and is dropped


# -- coverage of the statistics, the docs and the dashboard ------------------------------

EXPORTED = {
    "redis.hits": "chenu_cache_tier_reads_total",
    "redis.misses": "chenu_cache_tier_reads_total",
    "redis.connected": "chenu_cache_redis_connected",
    "memory.hits": "chenu_cache_tier_reads_total",
    "memory.misses": "chenu_cache_tier_reads_total",
    "memory.size": "chenu_cache_memory_entries",
    "memory.bytes": "chenu_cache_memory_bytes",
    "memory.evictions": "chenu_cache_memory_evictions_total",
    "memory.expirations": "chenu_cache_memory_expirations_total",
    "namespaces.hits": "chenu_cache_gets_total",
    "namespaces.misses": "chenu_cache_gets_total",
    "failovers": "chenu_cache_failovers_total",
    "failbacks": "chenu_cache_failbacks_total",
    "timeOnFallback": "chenu_cache_fallback_seconds_total",
    "breakerState": "chenu_cache_breaker_state",
    "backendErrors": "chenu_cache_backend_errors_total",
    "lastBackendErrorAt": "chenu_cache_last_backend_error_timestamp_seconds",
    "decodeErrors": "chenu_cache_read_errors_total",
    "typeErrors": "chenu_cache_read_errors_total",
    "commandErrors": "chenu_cache_read_errors_total",
    "staleByTag": "chenu_cache_stale_by_tag_total",
    "tagInvalidations": "chenu_cache_tag_invalidations_total",
    "loader.calls": "chenu_cache_loads_total",
    "loader.errors": "chenu_cache_load_errors_total",
    "loader.coalesced": "chenu_cache_loads_coalesced_total",
    "loader.refreshes": "chenu_cache_refreshes_total",
    "loader.refreshFailures": "chenu_cache_refresh_failures_total",
    "loader.staleServed": "chenu_cache_stale_served_total",
    "loader.fenced": "chenu_cache_loads_fenced_total",
    "loader.notCached": "chenu_cache_loads_not_cached_total",
    "nearCache.hits": "chenu_cache_near_hits_total",
    "nearCache.misses": "chenu_cache_near_misses_total",
    "nearCache.bypassed": "chenu_cache_near_bypassed_total",
    "nearCache.invalidations": "chenu_cache_near_invalidations_total",
    "nearCache.flushes": "chenu_cache_near_flushes_total",
    "nearCache.evictions": "chenu_cache_near_evictions_total",
    "nearCache.size": "chenu_cache_near_entries",
    "nearCache.bytes": "chenu_cache_near_bytes",
    "nearCache.tracking": "chenu_cache_near_tracking",
}
NOT_EXPORTED = {
    # Ratios: Prometheus computes them from the counters, over any window.
    "redis.hitRate",
    "memory.hitRate",
    "namespaces.hitRate",
    "hitRate",
    "nearCache.hitRate",
    # Configuration, not a measurement; links: 1 per primary while tracking is 1.
    "nearCache.enabled",
    "nearCache.links",
    # Sums or copies of exported series.
    "hits",
    "misses",
    "evictions",
    "memory.entries",
    "redis.configured",  # the redis series are there or not
    # Only get_statistics() asks the server for these (I/O), never a scrape.
    "redis.usedMemoryBytes",
    "redis.connectedClients",
}


def _numeric_keys() -> set[str]:
    """The JSON paths of every number (and flag) the statistics hold, and the breaker's state."""
    found: set[str] = set()

    def walk(keys: Any, path: str) -> None:
        for key in keys:
            kinds = typing.get_args(key.annotation) or (key.annotation,)
            if key.keys:
                walk(key.keys, path + key.name + ".")
            elif any(kind in (int, float, bool) for kind in kinds) or key.name == "breakerState":
                found.add(path + key.name)

    walk(CacheStatistics.json_keys(), "")
    return found


def test_every_numeric_statistic_is_exported_or_deliberately_not() -> None:
    numeric = _numeric_keys()
    assert numeric == set(EXPORTED) | NOT_EXPORTED
    assert set(EXPORTED.values()) <= set(METRIC_NAMES)
    # Not from CacheStatistics: whether the snapshot was read, and cache.load_durations().
    extra = {"chenu_cache_statistics_up", "chenu_cache_load_duration_seconds"}
    assert set(EXPORTED.values()) | extra == set(METRIC_NAMES)


def test_the_docs_list_every_metric() -> None:
    text = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    missing = [name for name in METRIC_NAMES if f"`{name}`" not in text]
    assert not missing


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "chenu-cache.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"chenu_cache_[a-z_]+", expr)}
    assert used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    assert {
        "chenu_cache_gets_total",
        "chenu_cache_loads_total",
        "chenu_cache_breaker_state",
        "chenu_cache_failovers_total",
        "chenu_cache_fallback_seconds_total",
        "chenu_cache_memory_entries",
    } <= used
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert len(titles) == len(dashboard["panels"])


def test_import_without_prometheus_client_gives_the_install_hint() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import chenu_cache.contrib.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert 'pip install "chenu-cache[prometheus]"' in out.stdout, out.stderr


def test_core_never_imports_prometheus_client() -> None:
    code = "import sys, chenu_cache; assert 'prometheus_client' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


async def test_load_durations_are_a_histogram() -> None:
    """Each loader run, failed ones too, lands in one bucket of the histogram."""

    async def slow() -> str:
        await asyncio.sleep(0.03)
        return "loaded"

    async def broken() -> str:
        raise RuntimeError("the database is down")

    async with FallbackCache(read_env=False) as cache:
        registry = CollectorRegistry()
        register(cache, registry)
        assert value(scrape(registry), "chenu_cache_load_duration_seconds_count") == 0
        assert await cache.get_or_set("k", slow) == "loaded"
        with pytest.raises(RuntimeError):
            await cache.get_or_set("b", broken)
        assert await cache.get_or_set("k", slow) == "loaded"  # a hit: no load
        durations = cache.load_durations()
        assert durations.count == 2
        assert durations.total_seconds >= 0.025
        samples = scrape(registry)
        name = "chenu_cache_load_duration_seconds"
        assert value(samples, name + "_count") == 2
        assert value(samples, name + "_sum") == pytest.approx(durations.total_seconds)
        assert value(samples, name + "_bucket", le="+Inf") == 2
        # The slow run took at least 25 ms: not in the buckets below that.
        assert value(samples, name + "_bucket", le="0.01") <= 1
        buckets = [value(samples, name + "_bucket", le=repr(bound)) for bound in durations.bounds]
        assert buckets == sorted(buckets)  # cumulative
        assert "chenu_cache_load_duration_seconds" in METRIC_NAMES
