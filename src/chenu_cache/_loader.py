"""The loader path of ``get_or_set``: misses, freshness, stale-if-error, the load lock.

`Loader` runs a factory on a miss under single flight, stores its value, and for
entries written with freshness options decides on each hit whether to refresh in the
background (``refresh_after``, XFetch), and on a failing load whether to serve the
expired value (``stale_if_error``). With ``lock``, one process at a time loads a key,
through the route's lock backend. It reads and writes through the functions the
facade gives it, so it never meets a backend itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ._freshness import (
    BackgroundTasks,
    EntryTiming,
    Freshness,
    SingleFlight,
    unwrap,
    wrap,
    xfetch_due,
)
from ._routes import Route
from .exceptions import BackendError, DeserializationError
from .serializers import Codec
from .stats import Counters

__all__ = ["Loader", "freshness_of"]

logger = logging.getLogger("chenu_cache")

_STALE_RETRY = 1.0  # after a failed load, serve stale this long before trying again
_MAX_STALE_KEYS = 10_000
_LOCK_POLL_FIRST = 0.005  # a lock waiter looks for the holder's value after 5 ms ...
_LOCK_POLL_MAX = 0.2  # ... doubling up to 200 ms: a few commands per second at most
_MAX_OPTIONS = 256

_options: dict[tuple[object, ...], Freshness | None] = {}


def freshness_of(
    refresh_after: float | timedelta | None,
    stale_if_error: float | timedelta | None,
    early_refresh: float | None,
    lock: bool | float,
) -> Freshness | None:
    """The validated options of a call, built once per distinct set and then reused.

    A decorated function passes the same options on every call: validating them each
    time made a hit with ``refresh_after`` three times slower than a plain one.
    """
    plain = refresh_after is None and stale_if_error is None and early_refresh is None
    if plain and lock is False:
        return None
    key = (refresh_after, stale_if_error, early_refresh, lock, type(lock))
    try:
        return _options[key]
    except KeyError:
        pass
    except TypeError:  # unhashable: validated (and refused) below, not remembered
        return Freshness.build(refresh_after, stale_if_error, early_refresh, lock)
    fresh = Freshness.build(refresh_after, stale_if_error, early_refresh, lock)
    if len(_options) >= _MAX_OPTIONS:
        _options.clear()
    _options[key] = fresh
    return fresh


class Loader:
    """Misses and refreshes of one cache: single flight, freshness, the load lock."""

    def __init__(
        self,
        *,
        codec: Codec,
        counters: Counters,
        read: Callable[[str], Awaitable[bytes | None]],
        store: Callable[[str, bytes, float | None], Awaitable[None]],
        route: Callable[[], Route],
        undecodable: Callable[[str, DeserializationError], None],
        clock: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.codec = codec
        self.counters = counters
        self._read = read
        self._store = store
        self._route = route
        self._undecodable = undecodable
        self._clock = clock
        self._random = rng
        self.flights: SingleFlight[bytes] = SingleFlight()
        self.background = BackgroundTasks()
        self._stale_retry: dict[str, float] = {}
        self._stale_logged: set[str] = set()

    async def close(self) -> None:
        await self.background.cancel_all()
        await self.flights.cancel_all()

    async def lookup(self, key: str) -> bytes | None:
        """Read ``key``; if a load of it finished meanwhile, read again."""
        flights = self.flights
        epoch = flights.completed
        data = await self._read(key)
        if data is None and key not in flights and flights.completed != epoch:
            data = await self._read(key)  # our miss may predate that load's write
        return data

    async def load(self, key: str, factory: Callable[[], Any], ttl: float | None) -> Any:
        """A plain miss: one load per key at a time; the value as the cache stores it."""
        payload = await self.flights.run(key, lambda: self._load(key, factory, ttl, None))
        return self.codec.decode(payload)

    async def get_or_set(
        self,
        key: str,
        slot: list[int],
        factory: Callable[[], Any],
        ttl: float | None,
        fresh: Freshness,
    ) -> Any:
        """``get_or_set`` with freshness options: hit, refresh, stale, or load."""
        flights = self.flights
        stale: Any = _NONE
        if key not in flights:
            data = await self.lookup(key)
            if data is not None:
                try:
                    payload, timing = unwrap(data)
                    value = self.codec.decode(payload)
                except DeserializationError as exc:
                    self._undecodable(key, exc)
                else:
                    now = self._clock()
                    if timing is None or now < timing.expires_at:
                        if timing is not None and self._due(now, timing, fresh):
                            self._refresh(key, factory, ttl, fresh)
                        slot[0] += 1
                        return value
                    window = fresh.stale_if_error
                    if window is not None and now <= timing.expires_at + window:
                        stale = value
                        if now < self._stale_retry.get(key, -math.inf):
                            # The loader failed moments ago: serve stale, retry later.
                            self.counters.stale_served += 1
                            slot[0] += 1
                            return stale
        slot[1] += 1
        try:
            payload = await flights.run(key, lambda: self._locked_load(key, factory, ttl, fresh))
        except Exception as exc:
            if stale is _NONE:
                raise
            self._serve_stale(key, exc, fresh)
            return stale
        self._stale_retry.pop(key, None)
        return self.codec.decode(payload)

    def _due(self, now: float, timing: EntryTiming, fresh: Freshness) -> bool:
        """Whether a hit should start a background refresh."""
        if fresh.refresh_after is not None and now - timing.written_at >= fresh.refresh_after:
            return True
        beta = fresh.early_refresh
        return beta is not None and xfetch_due(now, timing, beta, self._random)

    def _refresh(
        self, key: str, factory: Callable[[], Any], ttl: float | None, fresh: Freshness
    ) -> None:
        if key in self.flights:  # a load is already bringing a new value
            return
        self.background.start(
            key,
            lambda: self.flights.run(key, lambda: self._locked_load(key, factory, ttl, fresh)),
        )

    def _serve_stale(self, key: str, exc: Exception, fresh: Freshness) -> None:
        window = fresh.stale_if_error or 0.0
        self._stale_retry[key] = self._clock() + min(_STALE_RETRY, window)
        if len(self._stale_retry) > _MAX_STALE_KEYS:
            self._stale_retry.pop(next(iter(self._stale_retry)))
        self.counters.stale_served += 1
        if key not in self._stale_logged and len(self._stale_logged) < _MAX_STALE_KEYS:
            self._stale_logged.add(key)
            logger.warning(
                "chenu_cache: loader for %r failed (%s); serving the stale value",
                key,
                type(exc).__name__,
            )

    async def _locked_load(
        self, key: str, factory: Callable[[], Any], ttl: float | None, fresh: Freshness
    ) -> bytes:
        """Load under the cross-process lock when asked for and possible, else directly."""
        lock_ttl = fresh.lock_ttl
        route = self._route()
        locker = route.lock
        if lock_ttl is None or locker is None:
            return await self._load(key, factory, ttl, fresh)
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 2 * lock_ttl
        delay = _LOCK_POLL_FIRST
        while True:
            try:
                if await locker.acquire_lock(key, token, lock_ttl):
                    break
            except BackendError as exc:
                await route.failed(exc)  # Redis is gone: in-process single flight
                return await self._load(key, factory, ttl, fresh)
            # Another process loads: wait for its value with backoff, never spinning.
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LOCK_POLL_MAX)
            data = await self._read(key)
            if data is not None:
                payload, timing = unwrap(data)
                if timing is None or self._clock() < timing.expires_at:
                    return payload
            if loop.time() >= give_up:
                return await self._load(key, factory, ttl, fresh)
        try:
            return await self._load(key, factory, ttl, fresh)
        finally:
            with contextlib.suppress(BackendError):  # else it lapses after lock_ttl
                await locker.release_lock(key, token)

    async def _load(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        fresh: Freshness | None,
    ) -> bytes:
        """Run the factory, store its encoded value, return the codec's bytes."""
        counters = self.counters
        counters.loader_calls += 1
        started = self._clock()
        try:
            value = factory()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            counters.loader_errors += 1
            raise
        data = self.codec.encode(value)
        stored, physical = data, ttl
        if fresh is not None and fresh.timed:
            now = self._clock()
            stored = wrap(data, EntryTiming(now, ttl, max(0.0, now - started)))
            if ttl is not None and fresh.stale_if_error is not None:
                physical = ttl + fresh.stale_if_error  # outlive expiry to be served on error
        await self._store(key, stored, physical)
        return data


_NONE: Any = object()  # no stale value to fall back on
