"""``FallbackCache``: the cache users talk to.

It composes a primary backend (Redis) and a fallback (memory), serializes values and
applies namespaces and TTLs. What a call is (a read, a write, a change, a query) is
said here; how it reaches a backend is the current route's business (`_routes`), and
misses go to the loader (`_loader`). Backend errors never reach the caller: the route
answers from the fallback instead.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, overload

from typing_extensions import ParamSpec, Self, Unpack

from ._decorator import CachedFunction, DecoratorOptions, LoadOptions, bind_decorator
from ._events import follow, newest
from ._failover import Failover, Transition, recent_window_of
from ._fences import DEFAULT_LEASE_TTL
from ._glob import compile_glob, validate_pattern
from ._keys import DEFAULT_MAX_KEY_LENGTH, NAMESPACE_SEPARATOR, Resolver
from ._keys import validate_namespace as _validate_namespace
from ._loader import Load, Loader, freshness_of
from ._namespaces import DEFAULT_MAX_TTL, DEFAULT_TTL, NamespaceRegistry, to_seconds
from ._near import NearCache, NearCacheOptions
from ._reads import Reads
from ._routes import Route, bump_on
from ._statistics import gather, health_report, snapshot
from ._tags import stamp, validate_tags
from ._types import TTL
from ._value_types import value_type
from ._values import ABSENT, TAGGED, Decoder
from .backends import redis as _redis
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .backends.redis import RedisBackend
from .events import CacheEvent
from .exceptions import BackendError, CacheTypeError, CommandRefusedError, ConfigurationError
from .serializers import DEFAULT_MAX_VALUE_SIZE, Codec, Serializer
from .stats import CacheStatistics, Counters, HealthReport, LoadDurations

__all__ = ["ENV_REDIS_URL", "FallbackCache"]

logger = logging.getLogger("chenu_cache")

ENV_REDIS_URL = "CHENU_CACHE_REDIS_URL"
"""Environment variable ``initialize()`` reads when it is given no URL."""

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
D = TypeVar("D")


def _near_cache(option: bool | NearCacheOptions) -> NearCache | None:
    if isinstance(option, NearCacheOptions):
        return NearCache(option)
    if option is True:
        return NearCache(NearCacheOptions())
    if option is False:
        return None
    raise ConfigurationError("near_cache must be True, False or a NearCacheOptions")


class FallbackCache(Reads):
    """Redis in front of your coroutines, with an in-process memory tier behind it.

    Build it from a URL (``FallbackCache(redis_url="redis://127.0.0.1:6379/0")``), from
    backends (``FallbackCache(primary=RedisBackend(...), fallback=MemoryBackend(...))``),
    or with neither for a memory-only cache. Keyword options have safe defaults:

    - ``prefix``: every physical Redis key starts with it (default ``"chenu:"``).
    - ``default_ttl``: seconds for entries whose call and namespace name none
      (default one hour); ``namespaces``: extra or changed namespace TTLs.
    - ``serializer``, ``compress_threshold``, ``max_value_size``: how values are stored
      (JSON by default; see `chenu_cache.serializers`).
    - ``operation_timeout``, ``connect_timeout``, ``max_connections``: per Redis
      command, per connection, and commands at once per event loop (default 64).
    - ``outage_ttl_cap``, ``probe_interval``, ``probe_max_interval``,
      ``journal_max_keys``, ``recent_window`` (default: 2 s, 10 s behind Sentinel),
      ``on_transition``: failover behaviour (see the docs).
    - ``read_env``: let ``initialize()`` read ``CHENU_CACHE_REDIS_URL`` (default on).
    - ``lease_ttl``: seconds a load's claim on its key lives (default 60): a loader
      still running after that returns its value but does not store it (SPEC §12).
    - ``events``: append every invalidation to a stream (about ``events_maxlen``
      long) that `events()` follows (SPEC §16; default off).
    - ``near_cache``: keep entries read from Redis in process memory too, coherent
      through Redis's invalidations (SPEC §13; ``True``, or `NearCacheOptions` for
      its bounds and namespaces; default off).
    - ``clock``, ``rng``: the wall clock and random source of the freshness options
      (``time.time`` and ``random.random``; inject fakes in tests).

    Operations never raise backend errors: when the primary fails they are served by
    the fallback. They do raise typed `CacheError`
    subclasses for bad keys, namespaces, patterns, TTLs and values.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        primary: Backend | None = None,
        fallback: Backend | None = None,
        prefix: str = "chenu:",
        default_ttl: TTL = DEFAULT_TTL,
        namespaces: Mapping[str, TTL] | None = None,
        serializer: Serializer | None = None,
        compress_threshold: int | None = None,
        max_value_size: int | None = DEFAULT_MAX_VALUE_SIZE,
        max_key_length: int = DEFAULT_MAX_KEY_LENGTH,
        max_ttl: float = DEFAULT_MAX_TTL,
        memory_max_entries: int = 10_000,
        memory_max_bytes: int | None = None,
        operation_timeout: float = _redis.DEFAULT_OPERATION_TIMEOUT,
        connect_timeout: float = _redis.DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = _redis.DEFAULT_MAX_CONNECTIONS,
        outage_ttl_cap: float | None = 60.0,
        probe_interval: float = 0.25,
        probe_max_interval: float = 5.0,
        journal_max_keys: int = 10_000,
        recent_window: float | None = None,
        on_transition: Callable[[Transition], object] | None = None,
        read_env: bool = True,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        events: bool = False,
        events_maxlen: int = 10_000,
        near_cache: bool | NearCacheOptions = False,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if redis_url is not None and primary is not None:
            raise ConfigurationError("give FallbackCache either redis_url= or primary=, not both")
        if max_key_length < 1:
            raise ConfigurationError("max_key_length must be at least 1")
        self.prefix = prefix
        self.max_key_length = max_key_length
        self.read_env = read_env
        self._redis_options: dict[str, Any] = {
            "prefix": prefix,
            "operation_timeout": operation_timeout,
            "connect_timeout": connect_timeout,
            "max_connections": max_connections,
        }
        self.namespaces = NamespaceRegistry(namespaces, default_ttl=default_ttl, max_ttl=max_ttl)
        self.codec = Codec(
            serializer, compress_threshold=compress_threshold, max_value_size=max_value_size
        )
        self._fallback: Backend = (
            fallback
            if fallback is not None
            else MemoryBackend(max_entries=memory_max_entries, max_bytes=memory_max_bytes)
        )
        if redis_url is not None:
            primary = self._redis_from_url(redis_url)
        self._recent_window_given = recent_window is not None
        if recent_window is None:
            # A backend may know its deployment needs more (RedisBackend behind Sentinel).
            recent_window = recent_window_of(primary)
        self._failover = Failover(
            self._fallback,
            primary,
            probe_interval=probe_interval,
            probe_max_interval=probe_max_interval,
            outage_ttl_cap=outage_ttl_cap,
            journal_max_keys=journal_max_keys,
            recent_window=recent_window,
            on_transition=on_transition,
            near=_near_cache(near_cache),
        )
        # The failover swaps the route on each transition: a call decides nothing.
        self._route: Route = self._failover.route
        self._failover.on_switch = self._on_switch
        self._counters = Counters()
        self._keys = Resolver(max_key_length, self._counters.slot)
        self._resolve = self._keys.resolve
        self._memo = self._keys.memo  # the nowait hit path reads it directly
        self._decoder = Decoder(
            self.codec, self._counters, clock, lambda tags: self._route.tag_versions(tags, False)
        )
        self._said_memory_only = False
        self._primary_from_initialize = False
        # Freshness metadata is shared across processes, so it runs on the wall clock.
        self._clock = clock
        if not lease_ttl > 0:
            raise ConfigurationError("lease_ttl must be a positive number of seconds")
        if events and (type(events_maxlen) is not int or events_maxlen < 1):
            raise ConfigurationError("events_maxlen must be a positive int")
        self._events_maxlen = events_maxlen if events else 0
        self._origin = secrets.token_hex(8)  # this instance, in the events it publishes
        self._loader = Loader(
            codec=self.codec,
            counters=self._counters,
            decoder=self._decoder,
            read=self._read,
            tags_hold=self._decoder.tags_hold,
            route=lambda: self._route,
            clock=clock,
            rng=rng,
            lease_ttl=lease_ttl,
        )

    def _on_switch(self) -> None:
        self._route = self._failover.route

    def _redis_from_url(self, url: str) -> RedisBackend:
        return RedisBackend(url, **self._redis_options)

    # -- life cycle ------------------------------------------------------------------

    @property
    def primary(self) -> Backend | None:
        """The primary backend, or ``None`` for a memory-only cache."""
        return self._failover.primary

    @property
    def fallback(self) -> Backend:
        """The backend that serves when the primary cannot."""
        return self._fallback

    @property
    def backend(self) -> Backend:
        """The backend serving calls right now."""
        return self._failover.active

    async def initialize(self, redis_url: str | None = None) -> None:
        """Connect: to ``redis_url``, else the configured primary, else ``CHENU_CACHE_REDIS_URL``.

        With none of them the cache stays memory-only and says so once in the log.
        A Redis that cannot be reached does not make this raise: the cache starts on
        memory and switches to Redis when it answers. A malformed URL raises
        `ConfigurationError`.
        """
        url = redis_url
        if url is None and self._failover.primary is None and self.read_env:
            url = os.environ.get(ENV_REDIS_URL) or None
        if url is not None:
            new = self._redis_from_url(url)
            old = self._failover.primary
            self._failover.set_primary(new)
            self._primary_from_initialize = True
            if not self._recent_window_given:
                self._failover.recent_window = recent_window_of(new)
            if old is not None:
                await old.close()
        if self._failover.primary is None:
            if not self._said_memory_only:
                self._said_memory_only = True
                logger.info(
                    "chenu_cache: no Redis URL (argument or %s); caching in process memory only",
                    ENV_REDIS_URL,
                )
            return
        # During an outage (or after close()), what changed meanwhile is replayed on
        # the primary before it serves: the failover's business, never skipped.
        await self._failover.recover()

    async def close(self) -> None:
        """Stop background work and release connections; ``initialize()`` may reopen.

        A primary that ``initialize()`` connected (from its argument or the environment)
        is dropped, so the cache is as before ``initialize()``: memory-only. One given to
        the constructor stays, and is used again by the next call.
        """
        await self._loader.close()
        await self._failover.close()
        primary = self._failover.primary
        if primary is not None:
            try:
                await primary.close()
            except BackendError as exc:  # a dead server has nothing left to release
                logger.debug("chenu_cache: closing %s failed: %s", primary.name, exc)
            # Back on the primary, or memory-only if initialize() made it; changes not yet
            # replayed are kept for whichever primary comes next.
            self._failover.set_primary(None if self._primary_from_initialize else primary)
            self._primary_from_initialize = False
        await self._fallback.close()

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- writes ----------------------------------------------------------------------

    async def set(
        self,
        key: str,
        value: Any,
        ttl: TTL = None,
        namespace: str | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` (else the namespace's, else the default).

        ``ttl`` is seconds, a ``timedelta``, or ``NO_EXPIRY``. A value the serializer
        cannot encode raises `SerializationError` and
        nothing is written.
        """
        full, ns, _ = self._resolve(key, namespace)
        seconds = self.namespaces.resolve(ttl, ns)
        data = self.codec.encode(value)
        if tags:
            checked = validate_tags(tags)
            data = stamp(data, checked, await self._route.tag_versions(checked, True))
        self._loader.flights.discard(full)
        route = self._route
        write_nowait = route.write_nowait
        if write_nowait is not None:
            write_nowait(full, data, seconds)
        else:
            await route.write(full, data, seconds)

    async def set_many(
        self, items: Mapping[str, Any], ttl: TTL = None, namespace: str | None = None
    ) -> None:
        """Cache several values in one round trip; all are encoded before any is written."""
        entries: list[tuple[str, bytes, float | None]] = []
        for key, value in items.items():
            full, ns, _ = self._resolve(key, namespace)
            entries.append((full, self.codec.encode(value), self.namespaces.resolve(ttl, ns)))
        for full, _, _ in entries:
            self._loader.flights.discard(full)
        if entries:
            await self._route.write_many(entries)

    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        namespace: str | None = None,
        *,
        type: type[T],
        **options: Unpack[LoadOptions],
    ) -> T: ...
    @overload
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        namespace: str | None = None,
        *,
        type: Any = None,
        **options: Unpack[LoadOptions],
    ) -> Any: ...

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        namespace: str | None = None,
        *,
        type: Any = None,
        refresh_after: float | timedelta | None = None,
        stale_if_error: float | timedelta | None = None,
        early_refresh: float | None = None,
        lock: bool | float = False,
        cache_if: Callable[[Any], object] | None = None,
        tags: Iterable[str] = (),
    ) -> Any:
        """The cached value, or the factory's result, cached, on a miss.

        ``factory`` takes no arguments and may be sync, async, or return an awaitable;
        it runs only on a miss, and concurrent misses on one key in this process share
        one run (single flight; a caller cancelled mid-load does not cancel it for the
        others). Its exceptions reach every caller of that run and are not cached.
        Miss or hit, the caller gets the value as the cache stores it: of ``type`` when
        given (SPEC §11), else as JSON types (a tuple comes back as a list), so the
        type never depends on who loaded it. ``cache_if``: a predicate on the factory's
        result; when false, the result is returned and not stored. ``tags``: the
        entry's tags (see `invalidate_tags`).

        A load overtaken by an invalidation of its key (or a pattern, namespace or
        ``clear()`` covering it) or by a ``set()`` returns its value to its callers
        but does not store it, in every process sharing Redis (SPEC §12).

        Freshness options (see the docs): ``refresh_after`` (seconds after a write past
        which a hit is returned at once and refreshed in the background),
        ``stale_if_error`` (seconds past expiry during which a failing loader is
        answered with the last value), ``early_refresh`` (XFetch ``beta``), ``lock``
        (``True``, or the lock's TTL in seconds: one load across all processes).
        """
        full, ns, slot = self._resolve(key, namespace)
        if ttl is not None:
            to_seconds(ttl, max_ttl=self.namespaces.max_ttl)  # a bad TTL raises, hit or miss
        if cache_if is not None and not callable(cache_if):
            raise CacheTypeError("cache_if must be callable")
        kind = None if type is None else value_type(type)
        loader = self._loader
        fresh = freshness_of(refresh_after, stale_if_error, early_refresh, lock)
        tagged = validate_tags(tags) if tags else ()
        load = Load(factory, self.namespaces.resolve(ttl, ns), fresh, kind, cache_if, tagged)
        if fresh is not None:
            return await loader.get_or_set(full, slot, load)
        data = known = None
        if full not in loader.flights.running:  # while a load runs, reading is pointless
            route = self._route
            nowait = route.nowait
            if nowait is not None:
                data = nowait(full)
            if data is None and (nowait is None or not route.nowait_complete):
                if tagged:  # the entry and its tags' versions: one round trip if possible
                    data, known = await loader.lookup_tagged(full, tagged)
                else:
                    data = await loader.lookup(full)
            if data is not None:
                value = self._decoder.value(full, data, None, kind)
                if value is TAGGED:
                    value = await self._decoder.checked(full, data, kind, known)
                if value is not ABSENT:
                    slot[0] += 1
                    return value
        slot[1] += 1
        return await loader.load(full, load, data)

    # -- invalidation ----------------------------------------------------------------

    async def invalidate(self, key: str, namespace: str | None = None) -> bool:
        """Delete one entry; return whether it existed."""
        full = self._key(key, namespace)
        self._loader.flights.forget(full.__eq__)
        if self._events_maxlen:
            return await self._delete_publishing("key", (full,)) > 0
        return await self._route.change(lambda b: b.delete(full), keys=(full,))

    async def delete(self, key: str, namespace: str | None = None) -> bool:
        """Alias of `invalidate()`."""
        return await self.invalidate(key, namespace)

    async def delete_many(self, keys: Iterable[str], namespace: str | None = None) -> int:
        """Delete several entries in one round trip; return how many existed."""
        full = [self._key(k, namespace) for k in keys]
        if not full:
            return 0
        self._loader.flights.forget(set(full).__contains__)
        if self._events_maxlen:
            return await self._delete_publishing("keys", tuple(full))
        return await self._route.change(lambda b: b.delete_many(full), keys=full)

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete every entry whose logical key matches the Redis glob ``pattern``."""
        validate_pattern(pattern, max_length=self.max_key_length)
        self._loader.flights.forget(compile_glob(pattern))
        removed = await self._route.change(lambda b: b.delete_pattern(pattern), pattern=pattern)
        await self._publish("pattern", pattern=pattern)
        return removed

    async def invalidate_namespace(self, namespace: str) -> int:
        """Delete every entry of ``namespace``; return how many were deleted."""
        pattern = _validate_namespace(namespace) + NAMESPACE_SEPARATOR + "*"
        self._loader.flights.forget(compile_glob(pattern))
        removed = await self._route.change(lambda b: b.delete_pattern(pattern), pattern=pattern)
        await self._publish("namespace", namespace=namespace)
        return removed

    async def invalidate_tags(self, *tags: str) -> None:
        """Make every entry carrying one of ``tags`` a miss, in every process sharing
        Redis: one command per tag, whatever the number of entries (SPEC §14)."""
        checked = validate_tags(tags)
        if checked:
            self._counters.tag_invalidations += len(checked)
            await self._route.change(lambda b: bump_on(b, checked), tags=checked)
            await self._publish("tags", tags=checked)

    async def clear(self) -> int:
        """Delete every entry under this cache's prefix (never other software's keys)."""
        self._loader.flights.forget(lambda _: True)
        removed = await self._route.change(lambda b: b.clear(), everything=True)
        await self._publish("clear")
        return removed

    async def _delete_publishing(self, kind: str, keys: tuple[str, ...]) -> int:
        # The deletion and its event in one round trip (SPEC §16) where the primary can.
        event = CacheEvent(id="", kind=kind, time=self._clock(), origin=self._origin, keys=keys)
        try:
            return await self._route.delete_publishing(keys, event, self._events_maxlen)
        except CommandRefusedError as exc:  # the event refused (an ACL): delete, say so once
            self._decoder.refused("the event stream", exc)
            return await self._route.change(lambda b: b.delete_many(keys), keys=keys)

    async def _publish(self, kind: str, **what: Any) -> None:
        maxlen = self._events_maxlen
        if maxlen:
            event = CacheEvent(id="", kind=kind, time=self._clock(), origin=self._origin, **what)
            try:
                await self._route.publish(event, maxlen)
            except CommandRefusedError as exc:  # the invalidation is done; say so once
                self._decoder.refused("the event stream", exc)

    def events(self, since: str | None = None, *, wait: bool = True) -> AsyncIterator[CacheEvent]:
        """Follow this cache's invalidation events (``events=True``; SPEC §16), from now,
        or after the event id ``since``; a ``reset`` first when the stream no longer
        holds everything after ``since``. Waits for new events for ever (``wait=False``:
        ends once caught up with the stream); an outage pauses it. Break out of the
        loop (or cancel its task) to stop."""
        self._need_events()
        return follow(lambda: self._route, since, wait=wait)

    @property
    def events_enabled(self) -> bool:
        """Whether this cache publishes its invalidations (``events=True``)."""
        return bool(self._events_maxlen)

    async def latest_event_id(self) -> str:
        """The id of the newest event the stream holds (``"0-0"`` when it holds none):
        ``events(since=...)`` with it misses nothing made after this call. An outage
        makes it wait for Redis."""
        self._need_events()
        return await newest(lambda: self._route)

    def _need_events(self) -> None:
        if not self.events_enabled:
            raise ConfigurationError("events() needs FallbackCache(..., events=True)")

    # -- decorator -------------------------------------------------------------------

    @overload
    def cached(self, ttl: Callable[P, Awaitable[R]], /) -> CachedFunction[P, R]: ...
    @overload
    def cached(
        self, ttl: TTL = None, **options: Unpack[DecoratorOptions]
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]: ...

    def cached(self, ttl: Any = None, **options: Any) -> Any:
        """``@cache.cached(ttl=..., namespace=..., ...)``: the decorator bound to this cache.

        Takes the keywords of `chenu_cache.cache()` but ``cache=``.
        """
        return bind_decorator(lambda: self, ttl, **options)

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> CacheStatistics:
        """The statistics at once, with no I/O: what a metrics exporter reads per scrape.

        As `get_statistics()`, but without what only the Redis server can tell
        (``usedMemory``, ``connectedClients``: ``None`` here).
        """
        return snapshot(self._failover, self._counters, self._loader)

    def load_durations(self) -> LoadDurations:
        """How long this cache's loader runs took, as a histogram (`LoadDurations`): what
        a metrics exporter reads along with `statistics()`."""
        return self._counters.load_durations()

    async def get_statistics(self) -> CacheStatistics:
        """A snapshot of counters and Redis's own figures; ``.to_dict()`` is SPEC §7's JSON."""
        return await gather(self._failover, self._counters, self._loader)

    async def health(self) -> HealthReport:
        """Ping the primary (if any) and report which backend serves and how Redis is doing.

        A failed ping while the primary serves fails over, as any failed call would.
        """
        return await health_report(self._failover)

    def __repr__(self) -> str:
        return (
            f"FallbackCache(backend={self._failover.active.name!r}, "
            f"state={self._failover.state!r}, prefix={self.prefix!r})"
        )
