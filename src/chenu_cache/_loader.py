"""The loader path of ``get_or_set``: misses, freshness, stale-if-error, the load lock.

`Loader` runs a factory on a miss under single flight and stores its value through a
fence (`_fences`: a load that an invalidation or a write overtook stores nothing);
for entries written with freshness options it decides on each hit whether to refresh
in the background (``refresh_after``, XFetch), and on a failing load whether to serve
the expired value (``stale_if_error``). With ``lock``, one process at a time loads a
key, through the route's lock backend. It reads and writes through the route the
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

from ._fences import Basis, basis_of, is_marker, new_marker
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
from ._tags import stamp
from ._value_types import ValueType
from ._values import ABSENT, TAGGED, Decoder
from .exceptions import BackendError, CommandRefusedError, DeserializationError
from .serializers import Codec
from .stats import Counters

__all__ = ["Load", "Loader", "freshness_of"]

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


class Load:
    """What one ``get_or_set`` call asks of a load: its factory and options."""

    __slots__ = ("cache_if", "factory", "fresh", "kind", "tags", "ttl")

    def __init__(
        self,
        factory: Callable[[], Any],
        ttl: float | None,
        fresh: Freshness | None = None,
        kind: ValueType | None = None,
        cache_if: Callable[[Any], object] | None = None,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.factory = factory
        self.ttl = ttl
        self.fresh = fresh
        self.kind = kind
        self.cache_if = cache_if
        self.tags = tags


class _Uncached:
    """A load's value that was not stored: every caller of the flight gets it as is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_Outcome = bytes | _Uncached


class Loader:
    """Misses and refreshes of one cache: single flight, fences, freshness, the load lock."""

    def __init__(
        self,
        *,
        codec: Codec,
        counters: Counters,
        decoder: Decoder,
        read: Callable[[str], Awaitable[bytes | None]],
        tags_hold: Callable[[bytes], Awaitable[bool]],
        route: Callable[[], Route],
        clock: Callable[[], float],
        rng: Callable[[], float],
        lease_ttl: float,
    ) -> None:
        self.codec = codec
        self.counters = counters
        self.decoder = decoder
        self._read = read
        self._tags_hold = tags_hold
        self._route = route
        self._clock = clock
        self._random = rng
        self.lease_ttl = lease_ttl
        self.flights: SingleFlight[_Outcome] = SingleFlight()
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

    async def lookup_tagged(
        self, key: str, tags: tuple[str, ...]
    ) -> tuple[bytes | None, dict[str, bytes | None]]:
        """`lookup`, with the current versions of the tags the entry should carry."""
        flights = self.flights
        epoch = flights.completed
        try:
            data, versions = await self._route().read_tagged(key, tags)
            if data is None and key not in flights and flights.completed != epoch:
                data, versions = await self._route().read_tagged(key, tags)
        except CommandRefusedError as exc:
            self.decoder.refused(key, exc)
            return None, {}
        return data, dict(zip(tags, versions, strict=True))

    async def load(self, key: str, load: Load, seen: bytes | None) -> Any:
        """A plain miss: one load per key at a time; the value as the cache stores it.

        ``seen``: what the key held when the caller read it (``None``: absent).
        """
        outcome = await self.flights.run(key, lambda: self._load(key, load, seen))
        return self._result(outcome, load.kind)

    def _result(self, outcome: _Outcome, kind: ValueType | None) -> Any:
        if type(outcome) is _Uncached:
            return outcome.value
        return self.decoder.decode(outcome, kind)  # type: ignore[arg-type]

    async def get_or_set(self, key: str, slot: list[int], load: Load) -> Any:
        """``get_or_set`` with freshness options: hit, refresh, stale, or load."""
        flights = self.flights
        fresh = load.fresh
        assert fresh is not None
        stale: Any = _NONE
        seen: bytes | None = None
        if key not in flights:
            seen = await self.lookup(key)
            if seen is not None and not is_marker(seen) and await self._tags_hold(seen):
                payload, timing = unwrap(seen)
                try:
                    value = self.decoder.decode(payload, load.kind)
                except DeserializationError as exc:
                    self.decoder.undecodable(key, exc, seen)
                except ValueError as exc:
                    if load.kind is None:
                        raise
                    self.decoder.mismatch(key, load.kind, exc, seen)
                else:
                    now = self._clock()
                    if timing is None or now < timing.expires_at:
                        if timing is not None and self._due(now, timing, fresh):
                            self._refresh(key, load, seen)
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
            outcome = await flights.run(key, lambda: self._locked_load(key, load, seen))
        except Exception as exc:
            if stale is _NONE:
                raise
            self._serve_stale(key, exc, fresh)
            return stale
        self._stale_retry.pop(key, None)
        return self._result(outcome, load.kind)

    def _due(self, now: float, timing: EntryTiming, fresh: Freshness) -> bool:
        """Whether a hit should start a background refresh."""
        if fresh.refresh_after is not None and now - timing.written_at >= fresh.refresh_after:
            return True
        beta = fresh.early_refresh
        return beta is not None and xfetch_due(now, timing, beta, self._random)

    def _refresh(self, key: str, load: Load, seen: bytes) -> None:
        if key in self.flights:  # a load is already bringing a new value
            return
        self.background.start(
            key, lambda: self.flights.run(key, lambda: self._locked_load(key, load, seen))
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

    async def _locked_load(self, key: str, load: Load, seen: bytes | None) -> _Outcome:
        """Load under the cross-process lock when asked for and possible, else directly."""
        fresh = load.fresh
        lock_ttl = fresh.lock_ttl if fresh is not None else None
        route = self._route()
        locker = route.lock
        if lock_ttl is None or locker is None:
            return await self._load(key, load, seen)
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
                return await self._load(key, load, seen)
            # Another process loads: wait for its value with backoff, never spinning.
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LOCK_POLL_MAX)
            data = await self._read(key)
            # A value of the right type, not expired and not a claim: the holder's.
            if data is not None and data != seen:
                found = self.decoder.value(key, data, None, load.kind)
                if found is TAGGED and await self._tags_hold(data):
                    found = self.decoder.value(key, data, None, load.kind, False, True)
                if found is not ABSENT and found is not TAGGED:
                    return unwrap(data)[0]  # a tag block is decoded past by the callers
            if loop.time() >= give_up:
                return await self._load(key, load, seen)
        try:
            # If the holder before us stored a value, our write (fenced on ``seen``)
            # leaves it in place.
            return await self._load(key, load, seen)
        finally:
            with contextlib.suppress(BackendError):  # else it lapses after lock_ttl
                await locker.release_lock(key, token)

    async def _claim(self, key: str, seen: bytes | None) -> tuple[Basis | None, bool]:
        """What this load's write must find under ``key`` (``None``: nothing, write as
        ``set()`` does), and whether this load claimed it."""
        if seen is not None:
            return basis_of(seen), False
        marker = new_marker()
        try:
            held = await self._route().claim(key, marker, self.lease_ttl)
        except CommandRefusedError:
            # Another program's key of another type (WRONGTYPE): no claim can be
            # made, and the write replaces it as set() would.
            return None, False
        if held is None:
            return (marker, True), True
        return basis_of(held), False  # written meanwhile: replace only that

    async def _load(self, key: str, load: Load, seen: bytes | None) -> _Outcome:
        """Claim, run the factory, store its encoded value through the fence."""
        versions: list[bytes | None] = []
        if load.tags:  # the versions before the load: a tag invalidated meanwhile wins
            versions = await self._route().tag_versions(load.tags, True)
        basis, claimed = await self._claim(key, seen)
        try:
            outcome = await self._run(key, load, basis, versions)
        except Exception:
            if claimed and basis is not None:  # readers need not wait for it to lapse
                await self._give_up(key, basis[0])
            raise
        if claimed and basis is not None and type(outcome) is _Uncached:
            await self._give_up(key, basis[0])
        return outcome

    async def _run(
        self, key: str, load: Load, basis: Basis | None, versions: list[bytes | None]
    ) -> _Outcome:
        counters = self.counters
        counters.loader_calls += 1
        started = self._clock()
        try:
            value = load.factory()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            counters.loader_errors += 1
            counters.observe_load(max(0.0, self._clock() - started))
            raise
        counters.observe_load(max(0.0, self._clock() - started))
        cache_if = load.cache_if
        if cache_if is not None and not cache_if(value):
            counters.not_cached += 1
            return _Uncached(value)
        data = self.codec.encode(value)
        kind = load.kind
        if kind is not None:
            try:
                self.decoder.decode(data, kind)  # what is stored must read back
            except DeserializationError:
                raise
            except ValueError as exc:
                logger.warning(
                    "chenu_cache: the value loaded for %r does not fit %s (%s); returned, "
                    "not cached",
                    key,
                    kind.name,
                    str(exc).splitlines()[0],
                )
                counters.not_cached += 1
                return _Uncached(value)
        stored, physical = stamp(data, load.tags, versions), load.ttl
        fresh = load.fresh
        if fresh is not None and fresh.timed:
            now = self._clock()
            stored = wrap(stored, EntryTiming(now, load.ttl, max(0.0, now - started)))
            if load.ttl is not None and fresh.stale_if_error is not None:
                physical = load.ttl + fresh.stale_if_error  # outlive expiry for stale serves
        route = self._route()
        try:
            if basis is None:
                await route.write(key, stored, physical)
            elif not await route.fill(key, basis[0], stored, physical, basis[1]):
                counters.fenced += 1
        except CommandRefusedError as exc:
            # The caller asked to read: the value it waited for is the answer, whether
            # or not the server would keep it.
            self.decoder.refused(key, exc)
        return data

    async def _give_up(self, key: str, marker: bytes) -> None:
        """Remove this load's claim if it is still there."""
        with contextlib.suppress(BackendError, CommandRefusedError):
            await self._route().fill(key, marker, None, None, True)


_NONE: Any = object()  # no stale value to fall back on
