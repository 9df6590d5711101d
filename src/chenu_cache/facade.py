"""``FallbackCache``: the cache users talk to.

It composes a primary backend (Redis) and a fallback (memory), serializes values,
applies namespaces and TTLs, and hands every call to whichever backend the failover
says is serving. Backend errors never reach the caller: the call is answered by the
fallback instead.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

from typing_extensions import ParamSpec, Self

from ._glob import validate_pattern
from ._types import TTL
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .backends.redis import DEFAULT_CONNECT_TIMEOUT, DEFAULT_OPERATION_TIMEOUT, RedisBackend
from .decorator import CachedFunction, KeyBuilder, bind_decorator
from .exceptions import BackendError, CacheTypeError, ConfigurationError, DeserializationError
from .failover import Failover, Transition
from .freshness import SingleFlight
from .keys import DEFAULT_MAX_KEY_LENGTH, NAMESPACE_SEPARATOR, namespace_of, qualify
from .keys import validate_namespace as _validate_namespace
from .namespaces import DEFAULT_MAX_TTL, DEFAULT_TTL, NamespaceRegistry, to_seconds
from .serializers import DEFAULT_MAX_VALUE_SIZE, Codec, Serializer
from .stats import (
    CacheStatistics,
    Counters,
    HealthReport,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    RedisStatistics,
)

__all__ = ["ENV_REDIS_URL", "FallbackCache"]

logger = logging.getLogger("chenu_cache")

ENV_REDIS_URL = "CHENU_CACHE_REDIS_URL"
"""Environment variable ``initialize()`` reads when it is given no URL."""

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_MAX_SCAN_COUNT = 10_000


class FallbackCache:
    """Redis in front of your coroutines, with an in-process memory tier behind it.

    Build it from a URL (``FallbackCache(redis_url="redis://127.0.0.1:6379/0")``), from
    backends (``FallbackCache(primary=RedisBackend(...), fallback=MemoryBackend(...))``),
    or with neither for a memory-only cache. Keyword options have safe defaults:

    - ``prefix``: every physical Redis key starts with it (default ``"chenu:"``).
    - ``default_ttl``: seconds for entries whose call and namespace name none
      (default one hour); ``namespaces``: extra or changed namespace TTLs.
    - ``serializer``, ``compress_threshold``, ``max_value_size``: how values are stored
      (JSON by default; see :mod:`chenu_cache.serializers`).
    - ``operation_timeout``, ``connect_timeout``: per Redis command and connection.
    - ``outage_ttl_cap``, ``probe_interval``, ``probe_max_interval``,
      ``journal_max_keys``, ``on_transition``: failover behaviour (see the docs).
    - ``read_env``: let ``initialize()`` read ``CHENU_CACHE_REDIS_URL`` (default on).

    Operations never raise backend errors: when the primary fails they are served by
    the fallback. They do raise typed :class:`~chenu_cache.exceptions.CacheError`
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
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        outage_ttl_cap: float | None = 60.0,
        probe_interval: float = 0.25,
        probe_max_interval: float = 5.0,
        journal_max_keys: int = 10_000,
        on_transition: Callable[[Transition], object] | None = None,
        read_env: bool = True,
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
        }
        self.namespaces = NamespaceRegistry(namespaces, default_ttl=default_ttl, max_ttl=max_ttl)
        self.codec = Codec(
            serializer, compress_threshold=compress_threshold, max_value_size=max_value_size
        )
        self._decode = self.codec.decode
        self._fallback: Backend = (
            fallback
            if fallback is not None
            else MemoryBackend(max_entries=memory_max_entries, max_bytes=memory_max_bytes)
        )
        if redis_url is not None:
            primary = self._redis_from_url(redis_url)
        self._failover = Failover(
            self._fallback,
            primary,
            probe_interval=probe_interval,
            probe_max_interval=probe_max_interval,
            outage_ttl_cap=outage_ttl_cap,
            journal_max_keys=journal_max_keys,
            on_transition=on_transition,
        )
        self._flights: SingleFlight[bytes] = SingleFlight()
        self._counters = Counters()
        self._said_memory_only = False
        self._primary_from_initialize = False

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
        :class:`~chenu_cache.exceptions.ConfigurationError`.
        """
        url = redis_url
        if url is None and self._failover.primary is None and self.read_env:
            url = os.environ.get(ENV_REDIS_URL) or None
        if url is not None:
            new = self._redis_from_url(url)
            old = self._failover.primary
            self._failover.set_primary(new)
            self._primary_from_initialize = True
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
        await self._failover.check()

    async def close(self) -> None:
        """Stop background work and release connections; ``initialize()`` may reopen.

        A primary that ``initialize()`` connected (from its argument or the environment)
        is dropped, so the cache is as before ``initialize()``: memory-only. One given to
        the constructor stays, and is used again by the next call.
        """
        await self._flights.cancel_all()
        await self._failover.close()
        primary = self._failover.primary
        if primary is not None:
            try:
                await primary.close()
            except BackendError as exc:  # a dead server has nothing left to release
                logger.debug("chenu_cache: closing %s failed: %s", primary.name, exc)
            # Outage forgotten: back on the primary, or memory-only if initialize() made it.
            self._failover.set_primary(None if self._primary_from_initialize else primary)
            self._primary_from_initialize = False
        await self._fallback.close()

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- routing ---------------------------------------------------------------------

    async def _read(self, key: str) -> bytes | None:
        backend = self._failover.active
        if backend is not self._fallback:
            try:
                return await backend.get(key)
            except BackendError as exc:
                await self._failover.failed(exc)
        return await self._fallback.get(key)

    async def _store(self, key: str, data: bytes, ttl: float | None) -> None:
        failover = self._failover
        while True:
            backend = failover.active
            if backend is not self._fallback:
                try:
                    await backend.set(key, data, ttl)
                    return
                except BackendError as exc:
                    await failover.failed(exc)
            if failover.gate is not None:  # a failback is finishing: wait, then re-route
                await failover.gate.wait()
                continue
            if failover.journaling:
                failover.journal.add_keys((key,))
                ttl = failover.cap_ttl(ttl)
            await self._fallback.set(key, data, ttl)
            return

    async def _route(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        everything: bool = False,
    ) -> T:
        """Run ``call`` on the serving backend; on failure, on the fallback, journaled."""
        failover = self._failover
        backend = failover.active
        if backend is not self._fallback:
            try:
                return await call(backend)
            except BackendError as exc:
                await failover.failed(exc)
        if failover.gate is not None and (keys or pattern is not None or everything):
            # A failback is finishing: a change must wait for it, then take the new route.
            await failover.gate.wait()
            return await self._route(call, keys=keys, pattern=pattern, everything=everything)
        if failover.journaling:
            # Journaled before the fallback runs the call, so a failback that happens
            # meanwhile still replays it.
            journal = failover.journal
            if everything:
                journal.add_everything()
            elif pattern is not None:
                journal.add_pattern(pattern)
            else:
                journal.add_keys(keys)
        return await call(self._fallback)

    def _key(self, key: str, namespace: str | None) -> str:
        return qualify(key, namespace, self.max_key_length)

    def _undecodable(self, key: str, exc: DeserializationError) -> None:
        self._counters.decode_errors += 1
        level = logging.WARNING if self._counters.decode_errors == 1 else logging.DEBUG
        logger.log(
            level, "chenu_cache: entry %r cannot be decoded (%s); treated as a miss", key, exc
        )

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str, namespace: str | None = None, default: Any = None) -> Any:
        """The cached value, or ``default`` on a miss.

        A cached ``None`` is returned as ``None``; to tell it from a miss, pass
        ``default=MISSING`` and compare with ``is MISSING``. Every call returns a fresh
        copy: mutating it never changes the cache.
        """
        full = qualify(key, namespace, self.max_key_length)
        ns = namespace if namespace is not None else namespace_of(full)
        data = await self._read(full)
        if data is not None:
            try:
                value = self._decode(data)
            except DeserializationError as exc:
                self._undecodable(full, exc)
            else:
                self._counters.hit(ns)
                return value
        self._counters.miss(ns)
        return default

    async def get_many(self, keys: Iterable[str], namespace: str | None = None) -> dict[str, Any]:
        """The cached values of ``keys`` that are present, in one round trip.

        Missing keys are absent from the result (a cached ``None`` is present).
        """
        requested = list(keys)
        full = [self._key(k, namespace) for k in requested]
        found = await self._route(lambda b: b.get_many(full))
        result: dict[str, Any] = {}
        for key, logical, data in zip(requested, full, found, strict=True):
            ns = namespace if namespace is not None else namespace_of(logical)
            if data is not None:
                try:
                    result[key] = self._decode(data)
                except DeserializationError as exc:
                    self._undecodable(logical, exc)
                else:
                    self._counters.hit(ns)
                    continue
            self._counters.miss(ns)
        return result

    async def ttl(self, key: str, namespace: str | None = None) -> float | None:
        """Remaining seconds to live; ``math.inf`` without expiry; ``None`` when missing."""
        full = self._key(key, namespace)
        return await self._route(lambda b: b.ttl(full))

    async def exists(self, key: str, namespace: str | None = None) -> bool:
        """Whether an entry is cached under ``key`` (a cached ``None`` counts)."""
        return await self.ttl(key, namespace) is not None

    async def scan(
        self, pattern: str = "*", cursor: int = 0, count: int = 100
    ) -> tuple[int, list[str]]:
        """One page of logical keys matching ``pattern``; continue until the cursor is 0.

        The cursor belongs to the backend serving calls: if a failover or failback
        happens between pages, start again from 0.
        """
        validate_pattern(pattern, max_length=self.max_key_length)
        if type(cursor) is not int or cursor < 0:
            raise CacheTypeError("cursor must be a non-negative int")
        if type(count) is not int or not 1 <= count <= _MAX_SCAN_COUNT:
            raise CacheTypeError(f"count must be an int between 1 and {_MAX_SCAN_COUNT}")
        return await self._route(lambda b: b.scan(pattern, cursor, count))

    # -- writes ----------------------------------------------------------------------

    async def set(
        self, key: str, value: Any, ttl: TTL = None, namespace: str | None = None
    ) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` (else the namespace's, else the default).

        ``ttl`` is seconds, a ``timedelta``, or ``NO_EXPIRY``. A value the serializer
        cannot encode raises :class:`~chenu_cache.exceptions.SerializationError` and
        nothing is written.
        """
        full = qualify(key, namespace, self.max_key_length)
        seconds = self.namespaces.resolve(
            ttl, namespace if namespace is not None else namespace_of(full)
        )
        await self._store(full, self.codec.encode(value), seconds)

    async def set_many(
        self, items: Mapping[str, Any], ttl: TTL = None, namespace: str | None = None
    ) -> None:
        """Cache several values in one round trip; all are encoded before any is written."""
        entries: list[tuple[str, bytes, float | None]] = []
        for key, value in items.items():
            full = self._key(key, namespace)
            ns = namespace if namespace is not None else namespace_of(full)
            entries.append((full, self.codec.encode(value), self.namespaces.resolve(ttl, ns)))
        if not entries:
            return

        def write(backend: Backend) -> Awaitable[None]:
            if backend is self._fallback and self._failover.journaling:
                cap = self._failover.cap_ttl
                return backend.set_many([(k, v, cap(t)) for k, v, t in entries])
            return backend.set_many(entries)

        await self._route(write, keys=[k for k, _, _ in entries])

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: TTL = None,
        namespace: str | None = None,
    ) -> Any:
        """The cached value, or the factory's result, cached, on a miss.

        ``factory`` takes no arguments and may be sync, async, or return an awaitable;
        it runs only on a miss, and concurrent misses on one key in this process share
        one run (single flight; a caller cancelled mid-load does not cancel it for the
        others). Its exceptions reach every caller of that run and are not cached.
        Miss or hit, the caller gets the value as the cache stores it (a tuple comes
        back as a list with JSON), so the type never depends on who loaded it.
        """
        full = qualify(key, namespace, self.max_key_length)
        ns = namespace if namespace is not None else namespace_of(full)
        if ttl is not None:
            to_seconds(ttl, max_ttl=self.namespaces.max_ttl)
        flights = self._flights
        if full not in flights:  # while a load runs, reading the backend is pointless
            epoch = flights.completed
            data = await self._read(full)
            if data is None and full not in flights and flights.completed != epoch:
                # A load finished while we read: our miss may predate its write.
                data = await self._read(full)
            if data is not None:
                try:
                    value = self._decode(data)
                except DeserializationError as exc:
                    self._undecodable(full, exc)
                else:
                    self._counters.hit(ns)
                    return value
        self._counters.miss(ns)
        seconds = self.namespaces.resolve(ttl, ns)
        payload = await flights.run(full, lambda: self._load(full, factory, seconds))
        return self._decode(payload)

    async def _load(self, key: str, factory: Callable[[], Any], ttl: float | None) -> bytes:
        self._counters.loader_calls += 1
        try:
            value = factory()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            self._counters.loader_errors += 1
            raise
        data = self.codec.encode(value)
        await self._store(key, data, ttl)
        return data

    # -- invalidation ----------------------------------------------------------------

    async def invalidate(self, key: str, namespace: str | None = None) -> bool:
        """Delete one entry; return whether it existed."""
        full = self._key(key, namespace)
        return await self._route(lambda b: b.delete(full), keys=(full,))

    async def delete(self, key: str, namespace: str | None = None) -> bool:
        """Alias of :meth:`invalidate`."""
        return await self.invalidate(key, namespace)

    async def delete_many(self, keys: Iterable[str], namespace: str | None = None) -> int:
        """Delete several entries in one round trip; return how many existed."""
        full = [self._key(k, namespace) for k in keys]
        if not full:
            return 0
        return await self._route(lambda b: b.delete_many(full), keys=full)

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete every entry whose logical key matches the Redis glob ``pattern``."""
        validate_pattern(pattern, max_length=self.max_key_length)
        return await self._route(lambda b: b.delete_pattern(pattern), pattern=pattern)

    async def invalidate_namespace(self, namespace: str) -> int:
        """Delete every entry of ``namespace``; return how many were deleted."""
        pattern = _validate_namespace(namespace) + NAMESPACE_SEPARATOR + "*"
        return await self._route(lambda b: b.delete_pattern(pattern), pattern=pattern)

    async def clear(self) -> int:
        """Delete every entry under this cache's prefix (never other software's keys)."""
        return await self._route(lambda b: b.clear(), everything=True)

    # -- decorator -------------------------------------------------------------------

    @overload
    def cached(self, ttl: Callable[P, Awaitable[R]], /) -> CachedFunction[P, R]: ...

    @overload
    def cached(
        self,
        ttl: TTL = None,
        *,
        namespace: str | None = None,
        key_builder: KeyBuilder | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]: ...

    def cached(
        self,
        ttl: Any = None,
        *,
        namespace: str | None = None,
        key_builder: KeyBuilder | None = None,
    ) -> Any:
        """``@cache.cached(ttl=..., namespace=..., key_builder=...)``, bound to this cache."""
        return bind_decorator(lambda: self, ttl, namespace, key_builder)

    # -- statistics ------------------------------------------------------------------

    async def get_statistics(self) -> CacheStatistics:
        """A snapshot of counters; ``.to_dict()`` gives the JSON of SPEC §7."""
        counters = self._counters
        memory = await self._fallback.stats()
        primary = self._failover.primary
        redis = RedisStatistics(configured=False, connected=False)
        if primary is not None:
            connected = self._failover.active is primary
            details: Mapping[str, object] = {}
            hits = misses = 0
            if connected:
                try:
                    primary_stats = await primary.stats()
                except BackendError as exc:
                    await self._failover.failed(exc)
                    connected = False
                else:
                    details = primary_stats.details
                    hits, misses = primary_stats.hits, primary_stats.misses
            clients = details.get("connected_clients")
            used = details.get("used_memory_human")
            redis = RedisStatistics(
                configured=True,
                connected=connected,
                used_memory=str(used) if used is not None else None,
                connected_clients=int(str(clients)) if clients is not None else None,
                hits=hits,
                misses=misses,
            )
        return CacheStatistics(
            backend=self._failover.active.name,
            redis=redis,
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
            namespaces={
                name: NamespaceStatistics(hits=h, misses=m)
                for name, (h, m) in counters.namespaces.items()
            },
            loader=LoaderStatistics(
                calls=counters.loader_calls,
                errors=counters.loader_errors,
                coalesced=self._flights.joined,
            ),
            failover=self._failover.statistics(),
        )

    async def health(self) -> HealthReport:
        """Ping the primary (if any) and report which backend serves and how Redis is doing.

        A failed ping while the primary serves fails over, as any failed call would.
        """
        failover = self._failover
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

    def __repr__(self) -> str:
        return (
            f"FallbackCache(backend={self._failover.active.name!r}, "
            f"state={self._failover.state!r}, prefix={self.prefix!r})"
        )
