"""OpenTelemetry metrics and spans for chenu-cache caches.

Needs the ``otel`` extra (``pip install "chenu-cache[otel]"``: ``opentelemetry-api``
only; the SDK and its exporters are the application's)::

    from chenu_cache import cache_service
    from chenu_cache.contrib.otel import instrument

    handle = instrument(cache_service)   # the global meter and tracer providers
    ...
    handle.uninstrument()

Metrics are asynchronous instruments whose callbacks read ``cache.statistics()`` once
per collection: the cache counts as it always does and pays nothing more per call.
Spans come from wrapping the instance's public methods (the class is never touched), so
a cache that was not instrumented, or was uninstrumented, runs exactly the code it runs
without this module. Keys are recorded as a hash unless ``record_keys=True``.

Collected from another thread (a periodic reader), the snapshot is taken on the event
loop that uses the cache, because the memory tier tidies expired entries while it is
counted: the loop running when `instrument` is called, or the ``loop=`` given. This
module uses only chenu-cache's public API.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sized
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised by hiding opentelemetry
    raise ImportError(
        'chenu_cache.contrib.otel needs opentelemetry-api: pip install "chenu-cache[otel]"'
    ) from exc

from chenu_cache import (
    MISSING,
    CacheError,
    CacheStatistics,
    ConfigurationError,
    FallbackCache,
    __version__,
)

from . import _observe
from ._observe import DEFAULT_TIMEOUT, WatchedCache, breaker_states, check_options, figure

__all__ = [
    "DEFAULT_MAX_NAMESPACES",
    "INSTRUMENT_NAMES",
    "OTHER_NAMESPACES",
    "SPAN_NAMES",
    "Instrumentation",
    "instrument",
]

DEFAULT_MAX_NAMESPACES = _observe.DEFAULT_MAX_NAMESPACES
"""Undeclared namespaces that get a ``cache.namespace`` value of their own, per cache."""

OTHER_NAMESPACES = _observe.OTHER_NAMESPACES
"""The ``cache.namespace`` value that sums the namespaces past ``max_namespaces``."""

SPAN_NAMES: Mapping[str, str] = {
    "get": "cache.get",
    "get_nowait": "cache.get",
    "get_many": "cache.get_many",
    "get_or_set": "cache.get_or_set",
    "set": "cache.put",
    "set_many": "cache.put_many",
    "invalidate": "cache.remove",
    "delete_many": "cache.remove_many",
    "invalidate_pattern": "cache.remove_pattern",
    "invalidate_namespace": "cache.remove_namespace",
    "invalidate_tags": "cache.invalidate_tags",
    "clear": "cache.flush",
}
"""The span each traced method makes (``delete`` is ``invalidate``'s: it calls it)."""

# One snapshot serves one collection: every instrument's callback once. A snapshot older
# than this is never reused, whatever the callbacks' order.
_ROUND_MAX_AGE = 1.0
_NAMESPACE = re.compile(r"([a-z0-9_.-]{1,64}):")
_MISS: Any = object()  # what a wrapped read asks for as its default, to tell hits apart

# name, kind, unit, description, and the statistic that is its one observation (None:
# `_observations` makes its observations itself). Micrometer's names where it has one
# (cache.gets, cache.evictions, cache.size); the rest under chenu_cache.
_INSTRUMENTS: tuple[tuple[str, str, str, str, str | None], ...] = (
    (
        "chenu_cache.statistics.up",
        "gauge",
        "1",
        "1 if this collection read the cache's statistics, 0 if its event loop did not "
        "answer in time",
        None,
    ),
    (
        "cache.gets",
        "counter",
        "{get}",
        "Lookups by namespace and result (cache.result: hit or miss), whichever tier answered",
        None,
    ),
    (
        "cache.evictions",
        "counter",
        "{entry}",
        "Memory tier entries evicted to stay in bounds",
        None,
    ),
    ("cache.size", "updown", "{entry}", "Entries held by the memory tier", None),
    ("chenu_cache.memory.usage", "updown", "By", "Bytes held by the memory tier", None),
    ("chenu_cache.expirations", "counter", "{entry}", "Memory tier entries that expired", None),
    (
        "chenu_cache.tier.reads",
        "counter",
        "{read}",
        "Reads that reached a tier (cache.tier), by result",
        None,
    ),
    (
        "chenu_cache.read_errors",
        "counter",
        "{entry}",
        "Entries found but unusable (chenu_cache.reason: decode, type, command), as misses",
        None,
    ),
    (
        "chenu_cache.stale_by_tag",
        "counter",
        "{entry}",
        "Entries found stale because one of their tags was invalidated, as misses",
        "stale_by_tag",
    ),
    ("chenu_cache.tag_invalidations", "counter", "{tag}", "Tags invalidated", "tag_invalidations"),
    (
        "chenu_cache.loads",
        "counter",
        "{load}",
        "Loader runs, background refreshes included",
        "loader.calls",
    ),
    ("chenu_cache.load.errors", "counter", "{load}", "Loader runs that raised", "loader.errors"),
    (
        "chenu_cache.loads.coalesced",
        "counter",
        "{call}",
        "Callers served by a load another caller had started",
        "loader.coalesced",
    ),
    (
        "chenu_cache.refreshes",
        "counter",
        "{load}",
        "Background refreshes started",
        "loader.refreshes",
    ),
    (
        "chenu_cache.refresh.failures",
        "counter",
        "{load}",
        "Background refreshes that failed",
        "loader.refresh_failures",
    ),
    (
        "chenu_cache.loads.fenced",
        "counter",
        "{load}",
        "Loads not stored: an invalidation or a write overtook them",
        "loader.fenced",
    ),
    (
        "chenu_cache.loads.not_cached",
        "counter",
        "{load}",
        "Loads not stored: refused by cache_if or not of the requested type",
        "loader.not_cached",
    ),
    (
        "chenu_cache.near.hits",
        "counter",
        "{get}",
        "Reads served by the near cache",
        "near_cache.hits",
    ),
    (
        "chenu_cache.near.misses",
        "counter",
        "{get}",
        "Reads past the near cache to Redis, which may be kept near",
        "near_cache.misses",
    ),
    (
        "chenu_cache.near.bypassed",
        "counter",
        "{get}",
        "Reads to Redis left unkept: coherence could not be vouched for",
        "near_cache.bypassed",
    ),
    (
        "chenu_cache.near.invalidations",
        "counter",
        "{key}",
        "Keys Redis reported changed to the near cache",
        "near_cache.invalidations",
    ),
    (
        "chenu_cache.near.flushes",
        "counter",
        "{flush}",
        "Times the near cache was emptied",
        "near_cache.flushes",
    ),
    (
        "chenu_cache.near.evictions",
        "counter",
        "{entry}",
        "Near cache entries dropped to stay within its bounds",
        "near_cache.evictions",
    ),
    (
        "chenu_cache.near.entries",
        "gauge",
        "{entry}",
        "Entries held by the near cache",
        "near_cache.size",
    ),
    ("chenu_cache.near.bytes", "gauge", "By", "Bytes held by the near cache", "near_cache.bytes"),
    (
        "chenu_cache.near.tracking",
        "gauge",
        "1",
        "1 while the near cache serves (its tracking link is up)",
        "near_cache.tracking",
    ),
    (
        "chenu_cache.stale_served",
        "counter",
        "{get}",
        "Expired values served, by chenu_cache.reason (error: stale_if_error)",
        None,
    ),
    (
        "chenu_cache.breaker.state",
        "gauge",
        "1",
        "1 for the breaker's current state (chenu_cache.state), 0 for the others",
        None,
    ),
    ("chenu_cache.redis.connected", "gauge", "1", "1 while Redis serves, 0 during an outage", None),
    (
        "chenu_cache.failovers",
        "counter",
        "{failover}",
        "Switches from Redis to memory",
        "failover.failovers",
    ),
    (
        "chenu_cache.failbacks",
        "counter",
        "{failback}",
        "Switches back to Redis",
        "failover.failbacks",
    ),
    (
        "chenu_cache.fallback.time",
        "counter",
        "s",
        "Time spent serving from memory in place of Redis",
        "failover.time_on_fallback",
    ),
    (
        "chenu_cache.backend.errors",
        "counter",
        "{error}",
        "Failed Redis calls and probes",
        "failover.errors",
    ),
    (
        "chenu_cache.backend.last_error.time",
        "gauge",
        "s",
        "When the last Redis error happened, seconds since the epoch",
        "failover.last_error_at",
    ),
)

INSTRUMENT_NAMES: tuple[str, ...] = tuple(name for name, _, _, _, _ in _INSTRUMENTS)
"""The metric instruments this module creates."""

_Rows = dict[str, list[tuple[float, dict[str, str]]]]


def _namespace_of(key: str) -> str | None:
    match = _NAMESPACE.match(key)
    return match.group(1) if match else None


# -- metrics -----------------------------------------------------------------------------


class _Source:
    """One instrumented cache: its statistics, one snapshot per collection."""

    def __init__(self, watched: WatchedCache) -> None:
        self.watched = watched
        self.name = watched.name
        self._lock = threading.Lock()
        self._rows: _Rows | None = None
        self._served: set[str] = set()
        self._taken_at = 0.0

    def rows(self, instrument: str) -> list[tuple[float, dict[str, str]]]:
        """This cache's observations for ``instrument``, from this collection's snapshot."""
        with self._lock:
            now = time.monotonic()
            rows = self._rows
            if rows is None or instrument in self._served or now - self._taken_at > _ROUND_MAX_AGE:
                stats = self.watched.statistics()
                base = {"cache.name": self.name}
                rows = self._rows = {} if stats is None else _observations(self.watched, stats)
                rows["chenu_cache.statistics.up"] = [(0 if stats is None else 1, base)]
                self._served = set()
                self._taken_at = now
            self._served.add(instrument)
            return rows.get(instrument, [])


def _observations(source: WatchedCache, stats: CacheStatistics) -> _Rows:
    base = {"cache.name": source.name}
    rows: _Rows = {name: [] for name in INSTRUMENT_NAMES}

    def put(instrument: str, value: float, attributes: Mapping[str, str] | None = None) -> None:
        rows[instrument].append((value, {**base, **attributes} if attributes else base))

    for namespace, hits, misses in source.namespaces(stats.namespaces):
        put("cache.gets", hits, {"cache.namespace": namespace, "cache.result": "hit"})
        put("cache.gets", misses, {"cache.namespace": namespace, "cache.result": "miss"})
    memory = stats.memory
    in_memory = {"cache.tier": "memory"}
    put("cache.evictions", memory.evictions, in_memory)
    put("cache.size", memory.size, in_memory)
    put("chenu_cache.memory.usage", memory.bytes, in_memory)
    put("chenu_cache.expirations", memory.expirations, in_memory)
    redis = stats.redis
    if redis.configured:
        hits, misses = source.redis_reads(stats)
        put("chenu_cache.tier.reads", hits, {"cache.tier": "redis", "cache.result": "hit"})
        put("chenu_cache.tier.reads", misses, {"cache.tier": "redis", "cache.result": "miss"})
        put("chenu_cache.redis.connected", 1 if redis.connected else 0)
    put("chenu_cache.tier.reads", memory.hits, {"cache.tier": "memory", "cache.result": "hit"})
    put("chenu_cache.tier.reads", memory.misses, {"cache.tier": "memory", "cache.result": "miss"})
    put("chenu_cache.read_errors", stats.decode_errors, {"chenu_cache.reason": "decode"})
    put("chenu_cache.read_errors", stats.type_errors, {"chenu_cache.reason": "type"})
    put("chenu_cache.read_errors", stats.command_errors, {"chenu_cache.reason": "command"})
    put("chenu_cache.stale_served", stats.loader.stale_served, {"chenu_cache.reason": "error"})
    failover = stats.failover
    for state in breaker_states(failover.state):
        value = 1 if state == failover.state else 0
        put("chenu_cache.breaker.state", value, {"chenu_cache.state": state})
    for name, _, _, _, path in _INSTRUMENTS:
        if path is not None and (reading := figure(stats, path)) is not None:
            put(name, reading)
    return rows


class _Instruments:
    """The instruments of one meter provider, shared by every cache instrumented on it:
    an SDK keeps the callbacks of the first registration of a name and ignores later ones."""

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self.sources: dict[str, _Source] = {}
        create = {
            "counter": meter.create_observable_counter,
            "updown": meter.create_observable_up_down_counter,
            "gauge": meter.create_observable_gauge,
        }
        for name, kind, unit, description, _ in _INSTRUMENTS:
            callback = functools.partial(self._observe, name)
            create[kind](name, callbacks=[callback], unit=unit, description=description)

    def add(self, source: _Source) -> None:
        with self._lock:
            if source.name in self.sources:
                raise ConfigurationError(
                    f"a cache named {source.name!r} is already instrumented on this meter provider"
                )
            self.sources[source.name] = source

    def discard(self, source: _Source) -> None:
        with self._lock:
            if self.sources.get(source.name) is source:
                del self.sources[source.name]

    def _observe(self, instrument: str, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            sources = list(self.sources.values())
        return [
            Observation(value, attributes)
            for source in sources
            for value, attributes in source.rows(instrument)
        ]


_instruments: weakref.WeakKeyDictionary[MeterProvider, _Instruments] = weakref.WeakKeyDictionary()
_instruments_lock = threading.Lock()


def _instruments_of(provider: MeterProvider) -> _Instruments:
    with _instruments_lock:
        found = _instruments.get(provider)
        if found is None:
            meter = otel_metrics.get_meter("chenu_cache", __version__, provider)
            found = _instruments[provider] = _Instruments(meter)
        return found


# -- spans -------------------------------------------------------------------------------

_Attributes = dict[str, Any]
_Describe = Callable[[_Attributes, tuple[Any, ...], dict[str, Any], Any], None]


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _ask_for_miss(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, fallback: Any
) -> tuple[Any, tuple[Any, ...]]:
    """Put our own sentinel in place of the caller's ``default`` (returned), so that a
    cached value equal to the default still reads as a hit."""
    if len(args) > index:
        return args[index], (*args[:index], _MISS, *args[index + 1 :])
    default = kwargs.get("default", fallback)
    kwargs["default"] = _MISS
    return default, args


def _listed(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str
) -> tuple[Any, ...]:
    """The call's iterable argument as a list, so that the span can count it after the
    call consumed it (a generator, say)."""
    if len(args) > index:
        return (*args[:index], list(args[index]), *args[index + 1 :])
    if name in kwargs:
        kwargs[name] = list(kwargs[name])
    return args


async def _unrecorded(
    span: Span, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A call whose span does not record: nothing to gather. A sampled-out span is still
    made current, so that what the call traces follows its sampling decision; a no-op
    tracer's (an invalid context) is not, as it would hide the caller's span."""
    token = (
        otel_context.attach(trace.set_span_in_context(span))
        if span.get_span_context().is_valid
        else None
    )
    try:
        return await original(*args, **kwargs)
    finally:
        if token is not None:
            otel_context.detach(token)
        span.end()


def _namespace(found: _Attributes, namespace: Any) -> None:
    if isinstance(namespace, str):
        found["cache.namespace"] = namespace


def _removed(found: _Attributes, result: Any) -> None:
    if isinstance(result, (bool, int)):
        found["chenu_cache.removed"] = int(result)


class _Call:
    """One ``get_or_set`` call in progress: whether a load ran for its key meanwhile."""

    __slots__ = ("loaded", "open", "ran")

    def __init__(self) -> None:
        self.open = True
        self.loaded = False  # some caller's factory ran for this key during the call
        self.ran = False  # this call's own factory ran


class _Tracing:
    """The span wrappers of one cache's methods, and what each records.

    Attributes are gathered in one dict and set once, at the end, and only on a span
    that records: an SDK validates and locks per call, which costs more than the hit.
    """

    def __init__(
        self,
        cache: FallbackCache,
        tracer: Tracer,
        name: str,
        record_keys: bool,
        key_salt: bytes | None,
        record_item_size: bool,
    ) -> None:
        self.cache = cache
        self.tracer = tracer
        self.base = {"cache.name": name}
        self.record_keys = record_keys
        self.key_salt = key_salt
        self.record_item_size = record_item_size
        # Off once uninstrumented: a wrapper that something else wrapped since cannot be
        # taken out of the chain, so it calls straight through instead.
        self.on = True
        # get_or_set calls in progress per logical key: a load that starts while they
        # run is one they wait for (single flight), so none of them is a hit.
        self.calls: dict[str, list[_Call]] = {}

    # -- attributes ----------------------------------------------------------------------

    def redact(self, text: str) -> str:
        data = text.encode("utf-8", "surrogatepass")
        if self.key_salt is not None:
            return hmac.new(self.key_salt, data, hashlib.sha256).hexdigest()[:16]
        return hashlib.sha256(data).hexdigest()[:16]

    def key(self, found: _Attributes, key: Any, namespace: Any) -> None:
        """``cache.key`` and ``cache.namespace`` of a call on one key, as the cache reads
        them: ``get("123", namespace="user")`` and ``get("user:123")`` are one entry."""
        full = None
        if isinstance(namespace, str):
            found["cache.namespace"] = namespace
            if isinstance(key, str):
                full = namespace + ":" + key
        elif namespace is None and isinstance(key, str):
            full = key
            inside = _namespace_of(key)
            if inside is not None:
                found["cache.namespace"] = inside
        if full is not None:
            found["cache.key"] = full if self.record_keys else self.redact(full)

    def finish(self, span: Span, found: _Attributes, error: Exception | None) -> None:
        found["chenu_cache.backend"] = self.cache.backend.name
        span.set_attributes(found)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    # -- wrappers ------------------------------------------------------------------------

    def traced(
        self,
        method: str,
        original: Callable[..., Any],
        describe: _Describe,
        listed: tuple[int, str] | None = None,
    ) -> Callable[..., Any]:
        """One span around an awaited call; ``describe`` gathers the call's attributes
        when the span records; ``listed``: the position and name of an iterable argument."""
        start, base, finish = self.tracer.start_span, self.base, self.finish
        attach, detach = otel_context.attach, otel_context.detach
        in_context = trace.set_span_in_context
        name = SPAN_NAMES[method]

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return await original(*args, **kwargs)
            span = start(name, attributes=base)
            if not span.is_recording():
                return await _unrecorded(span, original, args, kwargs)
            if listed is not None:
                args = _listed(args, kwargs, *listed)
            token = attach(in_context(span))
            result = error = None
            try:
                result = await original(*args, **kwargs)
                return result
            except Exception as exc:
                error = exc
                raise
            finally:
                detach(token)
                found: _Attributes = {}
                describe(found, args, kwargs, result)
                finish(span, found, error)
                span.end()

        return wrapper

    def get(self, original: Callable[..., Any]) -> Callable[..., Any]:
        start, base, finish, key = self.tracer.start_span, self.base, self.finish, self.key
        attach, detach = otel_context.attach, otel_context.detach
        in_context = trace.set_span_in_context

        async def get(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return await original(*args, **kwargs)
            span = start("cache.get", attributes=base)
            if not span.is_recording():  # as _unrecorded, inline: the hottest path
                token = attach(in_context(span)) if span.get_span_context().is_valid else None
                try:
                    return await original(*args, **kwargs)
                finally:
                    if token is not None:
                        detach(token)
                    span.end()
            default, args = _ask_for_miss(args, kwargs, 2, None)
            token = attach(in_context(span))
            value = error = None
            try:
                value = await original(*args, **kwargs)
            except Exception as exc:
                error = exc
                raise
            finally:
                detach(token)
                found: _Attributes = {}
                key(found, _arg(args, kwargs, 0, "key"), _arg(args, kwargs, 1, "namespace"))
                if error is None:
                    found["cache.hit"] = value is not _MISS
                finish(span, found, error)
                span.end()
            return default if value is _MISS else value

        return get

    def get_nowait(self, original: Callable[..., Any]) -> Callable[..., Any]:
        start, base, finish, key = self.tracer.start_span, self.base, self.finish, self.key
        clock = time.time_ns

        def get_nowait(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return original(*args, **kwargs)
            began = clock()
            default, args = _ask_for_miss(args, kwargs, 2, MISSING)
            value = original(*args, **kwargs)
            if value is _MISS:
                # Not served from process memory right now: no lookup happened (the
                # statistics count none) and the awaiting call that follows has a span.
                return default
            span = start("cache.get", attributes=base, start_time=began)
            if span.is_recording():
                found: _Attributes = {"cache.hit": True, "chenu_cache.nowait": True}
                key(found, _arg(args, kwargs, 0, "key"), _arg(args, kwargs, 1, "namespace"))
                finish(span, found, None)
            span.end()
            return value

        return get_nowait

    def get_or_set(self, original: Callable[..., Any]) -> Callable[..., Any]:
        start, base, finish, describe = self.tracer.start_span, self.base, self.finish, self.key
        attach, detach = otel_context.attach, otel_context.detach
        in_context = trace.set_span_in_context
        calls = self.calls

        async def get_or_set(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return await original(*args, **kwargs)
            key, namespace = _arg(args, kwargs, 0, "key"), _arg(args, kwargs, 3, "namespace")
            full = ""  # not a str key: nothing to share a load with
            if isinstance(key, str):
                if isinstance(namespace, str):
                    full = namespace + ":" + key
                elif namespace is None:
                    full = key
            call = _Call()
            factory = _arg(args, kwargs, 1, "factory")

            def load() -> Any:
                call.ran = True
                if call.open:  # not a background refresh after the call returned
                    for other in calls.get(full, ()):
                        other.loaded = True
                return factory()

            if len(args) > 1:
                args = (args[0], load, *args[2:])
            else:
                kwargs["factory"] = load
            waiting = calls.setdefault(full, [])
            waiting.append(call)
            span = start("cache.get_or_set", attributes=base)
            recording = span.is_recording()
            # The loader's spans nest under it (and follow its sampling decision).
            token = attach(in_context(span)) if span.get_span_context().is_valid else None
            error = None
            try:
                return await original(*args, **kwargs)
            except Exception as exc:
                error = exc
                raise
            finally:
                call.open = False
                waiting.remove(call)
                if not waiting and calls.get(full) is waiting:
                    del calls[full]
                if token is not None:
                    detach(token)
                if recording:
                    found: _Attributes = {
                        "cache.hit": not (call.loaded or call.ran),
                        "chenu_cache.loaded": call.ran,
                    }
                    describe(found, key, namespace)
                    finish(span, found, error)
                span.end()

        return get_or_set

    # -- what each traced method records ---------------------------------------------

    def on_many(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        keys = _arg(args, kwargs, 0, "keys")
        _namespace(found, _arg(args, kwargs, 1, "namespace"))
        if isinstance(keys, Sized):
            found["chenu_cache.key_count"] = len(keys)
        if isinstance(result, Mapping):
            found["chenu_cache.hit_count"] = len(result)
        else:
            _removed(found, result)

    def on_set(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        self.key(found, _arg(args, kwargs, 0, "key"), _arg(args, kwargs, 3, "namespace"))
        if self.record_item_size and (len(args) > 1 or "value" in kwargs):
            try:
                size = len(self.cache.codec.encode(_arg(args, kwargs, 1, "value")))
            except CacheError:  # the write failed the same way, and says why
                return
            found["cache.item_size"] = size

    def on_set_many(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        items = _arg(args, kwargs, 0, "items")
        _namespace(found, _arg(args, kwargs, 2, "namespace"))
        if isinstance(items, Sized):
            found["chenu_cache.key_count"] = len(items)

    def on_invalidate(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        self.key(found, _arg(args, kwargs, 0, "key"), _arg(args, kwargs, 1, "namespace"))
        _removed(found, result)

    def on_pattern(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        pattern = _arg(args, kwargs, 0, "pattern")
        if isinstance(pattern, str):
            _namespace(found, _namespace_of(pattern))
            if self.record_keys:
                found["chenu_cache.pattern"] = pattern
        _removed(found, result)

    def on_namespace(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        _namespace(found, _arg(args, kwargs, 0, "namespace"))
        _removed(found, result)

    def on_tags(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        tags = [tag for tag in args if isinstance(tag, str)]
        found["chenu_cache.tag_count"] = len(tags)
        if self.record_keys:
            found["chenu_cache.tags"] = tags

    def on_clear(
        self, found: _Attributes, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        _removed(found, result)

    def wrappers(self, nowait_spans: bool) -> dict[str, Callable[..., Any]]:
        """Each traced method's wrapper, around what the instance has now."""
        cache = self.cache
        methods = [m for m in SPAN_NAMES if nowait_spans or m != "get_nowait"]
        now: dict[str, Callable[..., Any]] = {m: getattr(cache, m) for m in methods}
        simple: dict[str, tuple[_Describe, tuple[int, str] | None]] = {
            "get_many": (self.on_many, (0, "keys")),
            "set": (self.on_set, None),
            "set_many": (self.on_set_many, None),
            "invalidate": (self.on_invalidate, None),
            "delete_many": (self.on_many, (0, "keys")),
            "invalidate_pattern": (self.on_pattern, None),
            "invalidate_namespace": (self.on_namespace, None),
            "invalidate_tags": (self.on_tags, None),
            "clear": (self.on_clear, None),
        }
        special = {"get": self.get, "get_nowait": self.get_nowait, "get_or_set": self.get_or_set}
        made: dict[str, Callable[..., Any]] = {}
        for method in methods:
            if method in special:
                wrapper = special[method](now[method])
            else:
                describe, listed = simple[method]
                wrapper = self.traced(method, now[method], describe, listed)
            made[method] = functools.update_wrapper(wrapper, now[method])
        return made


# -- the handle --------------------------------------------------------------------------


class Instrumentation:
    """What `instrument` did to one cache; `uninstrument` undoes it."""

    def __init__(
        self,
        cache: FallbackCache,
        name: str,
        source: _Source | None,
        instruments: _Instruments | None,
        tracing: _Tracing | None,
        patched: dict[str, tuple[Any, Callable[..., Any]]],
    ) -> None:
        self.cache = cache
        self.name = name
        self._source = source
        self._instruments = instruments
        self._tracing = tracing
        self._patched = patched  # method: (what the instance had before, our wrapper)
        self._active = True

    @property
    def active(self) -> bool:
        """Whether the cache is still instrumented by this handle."""
        return self._active

    @property
    def traced_methods(self) -> tuple[str, ...]:
        """The instance's methods wrapped for spans (none with ``spans=False``)."""
        return tuple(self._patched)

    def uninstrument(self) -> None:
        """Take the wrappers off the instance and its series off the instruments.

        The instance's methods are the class's again (or what it had before). A wrapper
        that something else has wrapped since stays in that chain but calls straight
        through from now on. Calling this twice is harmless.
        """
        if not self._active:
            return
        self._active = False
        if self._instruments is not None and self._source is not None:
            self._instruments.discard(self._source)
        if self._tracing is not None:
            self._tracing.on = False
        attributes = vars(self.cache)
        for method, (before, wrapper) in self._patched.items():
            if attributes.get(method) is wrapper:
                if before is _MISS:
                    del attributes[method]
                else:
                    attributes[method] = before
        with _instrumented_lock:
            if _instrumented.get(self.cache) is self:
                del _instrumented[self.cache]

    def __repr__(self) -> str:
        state = "active" if self._active else "uninstrumented"
        return f"<Instrumentation {self.name!r} {state}>"


_instrumented: weakref.WeakKeyDictionary[FallbackCache, Instrumentation] = (
    weakref.WeakKeyDictionary()
)
_instrumented_lock = threading.Lock()


def instrument(
    cache: FallbackCache,
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    record_keys: bool = False,
    name: str = "default",
    metrics: bool = True,
    spans: bool = True,
    nowait_spans: bool = True,
    record_item_size: bool = True,
    key_salt: str | bytes | None = None,
    max_namespaces: int = DEFAULT_MAX_NAMESPACES,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Instrumentation:
    """Report ``cache``'s statistics as OpenTelemetry metrics and its calls as spans.

    - ``meter_provider``, ``tracer_provider``: default the global ones.
    - ``name``: the ``cache.name`` attribute, to tell several caches apart.
    - ``metrics``, ``spans``: either can be turned off. ``nowait_spans=False`` leaves
      ``get_nowait`` (the decorator's memory-hit path) without spans.
    - ``record_keys``: put the logical key itself in ``cache.key`` (and patterns and
      tags in their attributes); by default ``cache.key`` is the first 16 hex digits of
      its SHA-256, or of its HMAC-SHA256 under ``key_salt`` when given.
    - ``record_item_size``: on ``cache.put`` spans that record, ``cache.item_size`` is
      the encoded value's size; the value is encoded a second time to tell it.
    - ``max_namespaces``: undeclared namespaces reported by name; later ones are summed
      under ``"(other)"``.
    - ``loop``, ``timeout``: where a collection from another thread takes the snapshot
      (default: the loop running now, if any), and how long it waits for it.

    A cache is instrumented once at a time (`ConfigurationError` otherwise).
    """
    check_options(cache, name, max_namespaces, timeout)
    salt = key_salt.encode() if isinstance(key_salt, str) else key_salt
    with _instrumented_lock:
        if cache in _instrumented:
            raise ConfigurationError(
                "this cache is already instrumented; call uninstrument() on its handle first"
            )
        source = instruments = tracing = None
        if metrics:
            source = _Source(WatchedCache(cache, name, max_namespaces, loop, timeout))
            provider = meter_provider or otel_metrics.get_meter_provider()
            instruments = _instruments_of(provider)
            instruments.add(source)
        patched: dict[str, tuple[Any, Callable[..., Any]]] = {}
        tracer = trace.get_tracer("chenu_cache", __version__, tracer_provider) if spans else None
        # A no-op tracer never makes a span, and never becomes another: nothing to wrap.
        if tracer is not None and not isinstance(tracer, trace.NoOpTracer):
            tracing = _Tracing(cache, tracer, name, record_keys, salt, record_item_size)
            attributes = vars(cache)
            for method, wrapper in tracing.wrappers(nowait_spans).items():
                patched[method] = (attributes.get(method, _MISS), wrapper)
                setattr(cache, method, wrapper)
        handle = Instrumentation(cache, name, source, instruments, tracing, patched)
        _instrumented[cache] = handle
    return handle
