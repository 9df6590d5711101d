"""chenu_cache.contrib.otel (SPEC §18): metrics and spans, read back with the SDK's
in-memory reader and exporter.

Every test builds its own meter and tracer providers (the global ones are never set).
Caches run on memory, on a real Redis and on a port nothing listens on. Without the
OpenTelemetry SDK the module skips, except under ``CI=true``, where the import error
fails the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import (
    MISSING,
    CacheStatistics,
    ConfigurationError,
    FallbackCache,
    InvalidKeyError,
    SerializationError,
)
from tests.conftest import FakeClock, eventually
from tests.redis_server import free_port


def _optional(module: str) -> Any:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return importlib.import_module(module)  # CI must never pass by skipping
    return pytest.importorskip(module)


_optional("opentelemetry.trace")
_optional("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from chenu_cache.contrib.otel import (  # noqa: E402
    INSTRUMENT_NAMES,
    OTHER_NAMESPACES,
    SPAN_NAMES,
    Instrumentation,
    instrument,
)

Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]


class Telemetry:
    """An SDK meter provider with an in-memory reader, a tracer provider with an
    in-memory exporter, and what they recorded."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, cache: FallbackCache, **options: Any) -> Instrumentation:
        return instrument(
            cache, meter_provider=self.meters, tracer_provider=self.tracers, **options
        )

    def points(self) -> Points:
        data = self.reader.get_metrics_data()
        found: Points = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:  # type: ignore[union-attr]
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        found[key] = point.value  # type: ignore[union-attr]
        return found

    def spans(self) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return found

    def close(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_800_000_000.0)


def value(points: Points, name: str, **attributes: Any) -> float:
    """The sum of the points of ``name`` whose attributes include ``attributes``."""
    wanted = set(attributes.items())
    found = [v for (n, attrs), v in points.items() if n == name and wanted <= attrs]
    assert found, f"no point {name}{attributes}"
    return sum(found)


def before(points: Points, name: str, **attributes: Any) -> float:
    wanted = set(attributes.items())
    return sum(v for (n, attrs), v in points.items() if n == name and wanted <= attrs)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Boom(Exception):
    pass


async def workout(cache: FallbackCache, wall: FakeClock) -> None:
    """Moves every counter a cache keeps on any backend (command errors aside)."""
    await cache.set("user:1", {"id": 1})
    assert await cache.get("user:1") == {"id": 1}
    assert await cache.get("2", namespace="user") is None
    assert await cache.get("plain") is None
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
    assert await asyncio.gather(*loads) == ["slow"] * 3
    assert await cache.get_or_set("nc", lambda: None, cache_if=lambda v: v is not None) is None
    await cache.set("tagged", 1, tags=["grp"])
    await cache.invalidate_tags("grp")
    assert await cache.get("tagged") is None
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
    ("cache.gets", {"cache.namespace": "user", "cache.result": "hit"}),
    ("cache.gets", {"cache.namespace": "user", "cache.result": "miss"}),
    ("cache.gets", {"cache.namespace": "(none)", "cache.result": "miss"}),
    ("chenu_cache.read_errors", {"chenu_cache.reason": "decode"}),
    ("chenu_cache.read_errors", {"chenu_cache.reason": "type"}),
    ("chenu_cache.stale_by_tag", {}),
    ("chenu_cache.tag_invalidations", {}),
    ("chenu_cache.loads", {}),
    ("chenu_cache.load.errors", {}),
    ("chenu_cache.loads.coalesced", {}),
    ("chenu_cache.refreshes", {}),
    ("chenu_cache.refresh.failures", {}),
    ("chenu_cache.loads.fenced", {}),
    ("chenu_cache.loads.not_cached", {}),
    ("chenu_cache.stale_served", {"chenu_cache.reason": "error"}),
]


# -- metrics -----------------------------------------------------------------------------


async def test_memory_cache_every_instrument_moves(telemetry: Telemetry, wall: FakeClock) -> None:
    cache = FallbackCache(read_env=False, clock=wall, memory_max_entries=30)
    telemetry.instrument(cache, name="mem", spans=False)
    start = telemetry.points()
    await workout(cache, wall)
    for i in range(40):
        await cache.set(f"bulk:{i}", i)
    points = telemetry.points()
    moved = [
        *MOVED_EVERYWHERE,
        ("chenu_cache.tier.reads", {"cache.tier": "memory", "cache.result": "hit"}),
        ("chenu_cache.tier.reads", {"cache.tier": "memory", "cache.result": "miss"}),
        ("cache.evictions", {"cache.tier": "memory"}),
    ]
    for name, attributes in moved:
        after = value(points, name, **{"cache.name": "mem"}, **attributes)
        assert after > before(start, name, **attributes), name
    memory = cache.statistics().memory
    assert value(points, "cache.size", **{"cache.tier": "memory"}) == memory.size == 30
    assert value(points, "chenu_cache.memory.usage") == memory.bytes > 0
    assert value(points, "chenu_cache.expirations") == memory.expirations
    assert value(points, "chenu_cache.breaker.state", **{"chenu_cache.state": "memory-only"}) == 1
    assert value(points, "chenu_cache.breaker.state", **{"chenu_cache.state": "open"}) == 0
    assert value(points, "chenu_cache.statistics.up") == 1
    assert value(points, "chenu_cache.fallback.time") == 0
    assert not any(name == "chenu_cache.redis.connected" for name, _ in points)
    stats = cache.statistics()
    assert value(points, "cache.gets", **{"cache.result": "hit"}) == stats.hits
    assert value(points, "cache.gets", **{"cache.result": "miss"}) == stats.misses


async def test_redis_cache_every_instrument_moves(
    telemetry: Telemetry, redis_url: str, prefix: str, wall: FakeClock
) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, clock=wall, operation_timeout=2.0)
    await cache.initialize()
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        telemetry.instrument(cache)
        start = telemetry.points()
        await workout(cache, wall)
        await raw.lpush(prefix + "user:list", "x")
        assert await cache.get("user:list") is None  # WRONGTYPE: refused, a miss
        points = telemetry.points()
        moved = [
            *MOVED_EVERYWHERE,
            ("chenu_cache.tier.reads", {"cache.tier": "redis", "cache.result": "hit"}),
            ("chenu_cache.tier.reads", {"cache.tier": "redis", "cache.result": "miss"}),
            ("chenu_cache.read_errors", {"chenu_cache.reason": "command"}),
        ]
        for name, attributes in moved:
            assert value(points, name, **attributes) > before(start, name, **attributes), name
        assert value(points, "chenu_cache.redis.connected") == 1
        assert value(points, "chenu_cache.breaker.state", **{"chenu_cache.state": "closed"}) == 1
        assert value(points, "chenu_cache.failovers") == 0
    finally:
        await raw.delete(prefix + "user:list")
        await raw.aclose()
        await cache.clear()
        await cache.close()


async def test_a_redis_nobody_answers(telemetry: Telemetry) -> None:
    cache = FallbackCache(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        read_env=False,
        operation_timeout=0.2,
        connect_timeout=0.2,
    )
    await cache.initialize()
    try:
        telemetry.instrument(cache)
        await cache.set("user:1", 1)
        assert await cache.get("user:1") == 1
        await asyncio.sleep(0.01)
        points = telemetry.points()
        assert value(points, "chenu_cache.breaker.state", **{"chenu_cache.state": "open"}) == 1
        assert value(points, "chenu_cache.redis.connected") == 0
        assert value(points, "chenu_cache.backend.errors") >= 1
        assert value(points, "chenu_cache.backend.last_error.time") > 1e9
        assert value(points, "chenu_cache.fallback.time") > 0
        assert value(points, "chenu_cache.tier.reads", **{"cache.tier": "redis"}) == 0
        (span,) = [s for s in telemetry.spans() if s.name == "cache.get"]
        assert attrs(span)["chenu_cache.backend"] == "memory"
    finally:
        await cache.close()


async def test_one_snapshot_per_collection_taken_on_the_loop(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache, timeout=0.3)  # inside the loop: the instruments know it
    await cache.get("user:1")
    taken_on: list[threading.Thread] = []
    original = cache.statistics

    def spy() -> CacheStatistics:
        taken_on.append(threading.current_thread())
        return original()

    cache.statistics = spy  # type: ignore[method-assign]
    points = await asyncio.to_thread(telemetry.points)  # a periodic reader's thread, say
    assert value(points, "cache.gets", **{"cache.result": "miss"}) == 1
    assert taken_on == [threading.main_thread()]  # once, for every instrument
    telemetry.points()
    assert len(taken_on) == 2

    # A loop that does not answer in time: the collection says so instead of hanging.
    result: list[Points] = []
    collector = threading.Thread(target=lambda: result.append(telemetry.points()))
    collector.start()
    collector.join()  # blocks the loop until the collection gave up
    assert value(result[0], "chenu_cache.statistics.up") == 0
    assert not any(name == "cache.gets" for name, _ in result[0])
    await asyncio.sleep(0)


async def test_attributes_stay_bounded_under_10000_distinct_keys(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache, max_namespaces=10, spans=False)
    for i in range(10_000):
        await cache.get(f"k{i}")
        await cache.get(f"n{i}:k")
    points = telemetry.points()
    namespaces = {dict(a)["cache.namespace"] for n, a in points if n == "cache.gets"}
    assert len(namespaces) == 12  # "(none)", 10 others, "(other)"
    assert OTHER_NAMESPACES in namespaces
    assert value(points, "cache.gets") == 20_000
    assert len(points) < 100


async def test_several_caches_on_one_meter_provider(telemetry: Telemetry) -> None:
    first, second = FallbackCache(read_env=False), FallbackCache(read_env=False)
    telemetry.instrument(first, name="users")
    handle = telemetry.instrument(second, name="sessions")
    await first.get("a")
    await second.set("a", 1)
    await second.get("a")
    points = telemetry.points()
    assert value(points, "cache.gets", **{"cache.name": "users", "cache.result": "miss"}) == 1
    assert value(points, "cache.gets", **{"cache.name": "sessions", "cache.result": "hit"}) == 1
    with pytest.raises(ConfigurationError):
        telemetry.instrument(FallbackCache(read_env=False), name="users")
    with pytest.raises(ConfigurationError):
        telemetry.instrument(first, name="other")  # already instrumented
    handle.uninstrument()
    points = telemetry.points()
    assert {dict(a)["cache.name"] for _, a in points} == {"users"}


@pytest.mark.parametrize(
    "options", [{"name": ""}, {"max_namespaces": -1}, {"timeout": 0}, {"max_namespaces": 2.0}]
)
def test_bad_options_are_refused(telemetry: Telemetry, options: dict[str, Any]) -> None:
    cache = FallbackCache(read_env=False)
    with pytest.raises(ConfigurationError):
        telemetry.instrument(cache, **options)
    telemetry.instrument(cache).uninstrument()  # nothing was left half done


# -- spans -------------------------------------------------------------------------------


async def test_spans_carry_the_cache_attributes(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache, name="main")
    await cache.set("user:1", {"id": 1, "name": "Ada"})
    await cache.set("none", None)
    assert await cache.get("1", namespace="user") == {"id": 1, "name": "Ada"}
    assert await cache.get("none") is None  # a cached None is a hit
    assert await cache.get("user:2", default="d") == "d"
    assert await cache.get("user:2", None, "positional") == "positional"
    assert await cache.get_many(k for k in ["user:1", "user:2"]) == {
        "user:1": {"id": 1, "name": "Ada"}
    }
    await cache.set_many({"a": 1, "b": 2}, namespace="project")
    assert await cache.invalidate("user:1") is True
    assert await cache.delete("user:1") is False
    assert await cache.delete_many(k for k in ["project:a", "project:b", "x"]) == 2
    await cache.set("user:3", 3)
    assert await cache.invalidate_pattern("user:*") == 1
    assert await cache.invalidate_namespace("project") == 0
    await cache.invalidate_tags("t1", "t2")
    assert await cache.clear() == 1

    spans = telemetry.spans()
    assert [s.name for s in spans] == [
        "cache.put",
        "cache.put",
        "cache.get",
        "cache.get",
        "cache.get",
        "cache.get",
        "cache.get_many",
        "cache.put_many",
        "cache.remove",
        "cache.remove",
        "cache.remove_many",
        "cache.put",
        "cache.remove_pattern",
        "cache.remove_namespace",
        "cache.invalidate_tags",
        "cache.flush",
    ]
    put, _, hit, none_hit, miss, positional, many, put_many, removed, not_there = spans[:10]
    remove_many, _, pattern, namespace, tags, flush = spans[10:]
    base = {"cache.name": "main", "chenu_cache.backend": "memory"}
    encoded = len(cache.codec.encode({"id": 1, "name": "Ada"}))
    assert attrs(put) == {
        **base,
        "cache.namespace": "user",
        "cache.key": digest("user:1"),
        "cache.item_size": encoded,
    }
    assert attrs(hit) == {
        **base,
        "cache.namespace": "user",
        "cache.key": digest("user:1"),  # get("1", namespace="user") is the entry user:1
        "cache.hit": True,
    }
    assert attrs(none_hit)["cache.hit"] is True
    assert "cache.namespace" not in attrs(none_hit)
    assert attrs(miss)["cache.hit"] is False
    assert attrs(positional)["cache.hit"] is False
    assert attrs(many) == {**base, "chenu_cache.key_count": 2, "chenu_cache.hit_count": 1}
    assert attrs(put_many) == {**base, "cache.namespace": "project", "chenu_cache.key_count": 2}
    assert attrs(removed)["chenu_cache.removed"] == 1
    assert attrs(not_there)["chenu_cache.removed"] == 0  # delete() is invalidate()'s span
    assert attrs(remove_many) == {**base, "chenu_cache.key_count": 3, "chenu_cache.removed": 2}
    assert attrs(pattern) == {**base, "cache.namespace": "user", "chenu_cache.removed": 1}
    assert attrs(namespace) == {**base, "cache.namespace": "project", "chenu_cache.removed": 0}
    assert attrs(tags) == {**base, "chenu_cache.tag_count": 2}
    assert attrs(flush) == {**base, "chenu_cache.removed": 1}
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


async def test_keys_are_recorded_only_when_asked(telemetry: Telemetry) -> None:
    plain, salted, recorded = (FallbackCache(read_env=False) for _ in range(3))
    telemetry.instrument(plain, name="plain")
    telemetry.instrument(salted, name="salted", key_salt="s3cret")
    telemetry.instrument(recorded, name="recorded", record_keys=True, record_item_size=False)
    for cache in (plain, salted, recorded):
        await cache.set("user:42", 1)
        await cache.invalidate_pattern("user:4*")
        await cache.invalidate_tags("user:42")
    spans: dict[str, dict[str, dict[str, Any]]] = {}
    for span in telemetry.spans():
        spans.setdefault(attrs(span)["cache.name"], {})[span.name] = attrs(span)
    assert spans["plain"]["cache.put"]["cache.key"] == digest("user:42")
    salted_key = hmac.new(b"s3cret", b"user:42", hashlib.sha256).hexdigest()[:16]
    assert spans["salted"]["cache.put"]["cache.key"] == salted_key
    assert spans["recorded"]["cache.put"]["cache.key"] == "user:42"
    assert "cache.item_size" not in spans["recorded"]["cache.put"]
    assert spans["recorded"]["cache.remove_pattern"]["chenu_cache.pattern"] == "user:4*"
    assert spans["recorded"]["cache.invalidate_tags"]["chenu_cache.tags"] == ("user:42",)
    for name in ("plain", "salted"):  # nothing of the key, pattern or tags shows
        assert not any("42" in str(v) for a in spans[name].values() for v in a.values())


async def test_get_or_set_hit_miss_and_joined_loads(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache)
    release = asyncio.Event()
    runs = 0

    async def slow() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "v"

    calls = [asyncio.create_task(cache.get_or_set("user:7", slow, 60)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*calls) == ["v"] * 3
    assert runs == 1
    assert await cache.get_or_set(key="7", factory=slow, namespace="user") == "v"
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["cache.get_or_set"] * 4
    loads = [(attrs(s)["cache.hit"], attrs(s)["chenu_cache.loaded"]) for s in spans[:3]]
    assert sorted(loads) == [(False, False), (False, False), (False, True)]  # one ran it
    assert (attrs(spans[3])["cache.hit"], attrs(spans[3])["chenu_cache.loaded"]) == (True, False)
    assert {attrs(s)["cache.key"] for s in spans} == {digest("user:7")}


async def test_a_background_refresh_does_not_make_a_hit_a_miss(
    telemetry: Telemetry, wall: FakeClock
) -> None:
    cache = FallbackCache(read_env=False, clock=wall)
    telemetry.instrument(cache)
    await cache.get_or_set("k", lambda: 1, ttl=60, refresh_after=10)
    wall.advance(20)
    assert await cache.get_or_set("k", lambda: 2, ttl=60, refresh_after=10) == 1

    async def refreshed() -> bool:
        return await cache.get("k") == 2

    await eventually(refreshed)
    spans = [s for s in telemetry.spans() if s.name == "cache.get_or_set"]
    assert [attrs(s)["cache.hit"] for s in spans] == [False, True]
    # The refresh ran after the hit's span ended: not that call's load.
    assert [attrs(s)["chenu_cache.loaded"] for s in spans] == [True, False]


async def test_errors_mark_their_span(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache)

    def failing() -> int:
        raise Boom("no database")

    with pytest.raises(Boom):
        await cache.get_or_set("user:1", failing)
    with pytest.raises(InvalidKeyError):
        await cache.get("has space")
    with pytest.raises(SerializationError):
        await cache.set("user:2", object())
    load, bad, unencodable = telemetry.spans()
    assert unencodable.name == "cache.put"
    assert unencodable.status.status_code is StatusCode.ERROR
    assert "cache.item_size" not in attrs(unencodable)
    assert load.status.status_code is StatusCode.ERROR
    assert load.status.description == "Boom: no database"
    assert [e.name for e in load.events] == ["exception"]
    assert attrs(load)["cache.hit"] is False
    assert bad.status.status_code is StatusCode.ERROR
    assert "cache.hit" not in attrs(bad)


async def test_spans_nest_in_the_callers_trace_and_loads_nest_in_them(
    telemetry: Telemetry,
) -> None:
    cache = FallbackCache(read_env=False)
    telemetry.instrument(cache)
    tracer = telemetry.tracers.get_tracer("app")

    async def load() -> int:
        with tracer.start_as_current_span("db.query"):
            return 1

    with tracer.start_as_current_span("request"):
        await cache.get_or_set("k", load)
        await cache.get("k")
    query, get_or_set, get, request = telemetry.spans()
    assert query.parent is not None
    assert get_or_set.parent is not None
    assert get.parent is not None
    assert query.parent.span_id == get_or_set.context.span_id
    assert get_or_set.parent.span_id == request.context.span_id
    assert get.parent.span_id == request.context.span_id


async def test_decorated_calls_on_memory(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    handle = telemetry.instrument(cache)

    @cache.cached(ttl=60, namespace="user")
    async def profile(uid: int) -> dict[str, int]:
        return {"uid": uid}

    assert await profile(1) == {"uid": 1}  # a miss: get_nowait misses, get_or_set loads
    assert await profile(1) == {"uid": 1}  # a hit in memory: no await at all
    assert await profile.invalidate(1) is True
    miss, hit, removed = telemetry.spans()
    assert miss.name == "cache.get_or_set"
    assert attrs(miss)["cache.hit"] is False
    assert hit.name == "cache.get"
    assert attrs(hit)["cache.hit"] is True
    assert attrs(hit)["chenu_cache.nowait"] is True
    assert hit.start_time is not None
    assert hit.end_time is not None
    assert hit.start_time <= hit.end_time
    assert removed.name == "cache.remove"
    assert attrs(miss)["cache.key"] == attrs(hit)["cache.key"] == attrs(removed)["cache.key"]
    assert attrs(hit)["cache.namespace"] == "user"
    handle.uninstrument()

    telemetry.instrument(cache, nowait_spans=False)
    await profile(2)
    await profile(2)
    assert [s.name for s in telemetry.spans()] == ["cache.get_or_set"]  # the hit made none
    assert cache.get_nowait("user:x") is MISSING


async def test_decorated_calls_on_redis(telemetry: Telemetry, redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, operation_timeout=2.0)
    await cache.initialize()
    try:
        telemetry.instrument(cache)

        @cache.cached(ttl=60)
        async def double(n: int) -> int:
            return 2 * n

        assert await double(2) == 4
        assert await double(2) == 4
        spans = telemetry.spans()
        assert [s.name for s in spans] == ["cache.get_or_set"] * 2  # one span per call
        assert [attrs(s)["cache.hit"] for s in spans] == [False, True]
        assert {attrs(s)["chenu_cache.backend"] for s in spans} == {"redis"}
    finally:
        await cache.clear()
        await cache.close()


# -- on and off --------------------------------------------------------------------------


async def test_uninstrument_restores_the_instance(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    untouched = dict(vars(cache))
    handle = telemetry.instrument(cache)
    assert set(handle.traced_methods) == set(SPAN_NAMES)
    assert set(vars(cache)) == set(untouched) | set(SPAN_NAMES)
    await cache.get("user:1")
    assert telemetry.spans()
    assert telemetry.points()
    handle.uninstrument()
    handle.uninstrument()  # harmless
    assert not handle.active
    assert vars(cache).keys() == untouched.keys()
    assert cache.get.__func__ is type(cache).get  # type: ignore[attr-defined]
    await cache.get("user:1")
    await cache.set("user:1", 1)
    assert telemetry.spans() == []
    assert not any(a for _, a in telemetry.points())
    again = telemetry.instrument(cache)  # and it can be instrumented again
    await cache.get("user:1")
    assert [s.name for s in telemetry.spans()] == ["cache.get"]
    again.uninstrument()


async def test_a_wrapper_wrapped_since_calls_straight_through(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    handle = telemetry.instrument(cache)
    ours = cache.get
    seen: list[str] = []

    async def theirs(key: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(key)
        return await ours(key, *args, **kwargs)

    cache.get = theirs  # type: ignore[method-assign]
    handle.uninstrument()
    assert cache.get is theirs  # not ours to take away
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    assert seen == ["k"]
    assert telemetry.spans() == []


async def test_metrics_alone_leave_the_instance_alone(telemetry: Telemetry) -> None:
    cache = FallbackCache(read_env=False)
    untouched = dict(vars(cache))
    handle = telemetry.instrument(cache, spans=False)
    assert handle.traced_methods == ()
    assert vars(cache).keys() == untouched.keys()
    assert all(vars(cache)[name] is untouched[name] for name in untouched)
    await cache.get("k")
    assert telemetry.spans() == []
    assert value(telemetry.points(), "cache.gets", **{"cache.result": "miss"}) == 1


def test_importing_changes_nothing() -> None:
    for method in SPAN_NAMES:
        assert getattr(FallbackCache, method).__module__.startswith("chenu_cache._")
    assert len(set(INSTRUMENT_NAMES)) == len(INSTRUMENT_NAMES)


async def test_a_no_op_tracer_provider_wraps_nothing() -> None:
    cache = FallbackCache(read_env=False)
    handle = instrument(cache, tracer_provider=trace.NoOpTracerProvider(), metrics=False)
    assert handle.traced_methods == ()
    assert not set(SPAN_NAMES) & set(vars(cache))
    handle.uninstrument()


async def test_spans_that_do_not_record_still_carry_the_sampling_decision() -> None:
    exporter = InMemorySpanExporter()
    tracers = TracerProvider(sampler=ALWAYS_OFF)
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    cache = FallbackCache(read_env=False)
    handle = instrument(cache, tracer_provider=tracers, metrics=False)
    seen: list[bool] = []

    def load() -> int:
        current = trace.get_current_span()
        seen.append(current.get_span_context().is_valid and not current.is_recording())
        return 1

    try:
        assert await cache.get_or_set("k", load) == 1
        assert await cache.get("k", default=MISSING) == 1
        assert await cache.get("nope", default="d") == "d"
        assert cache.get_nowait("k") == 1
        await cache.set_many({"a": 1})
        assert seen == [True]  # the loader ran under the (sampled-out) cache span
        assert exporter.get_finished_spans() == ()
    finally:
        handle.uninstrument()
        tracers.shutdown()


def test_import_without_opentelemetry_gives_the_install_hint() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import chenu_cache.contrib.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert 'pip install "chenu-cache[otel]"' in out.stdout, out.stderr


def test_the_core_works_without_opentelemetry() -> None:
    # (redis-py imports opentelemetry itself when it is installed: hide it.)
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import asyncio, chenu_cache\n"
        "async def main():\n"
        "    cache = chenu_cache.FallbackCache(read_env=False)\n"
        "    await cache.set('k', 1)\n"
        "    assert await cache.get('k') == 1\n"
        "asyncio.run(main())\n"
        "assert 'chenu_cache.contrib.otel' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
