"""Routes: how a call reaches the backends, one object per failover state.

This is the only place where a call meets a backend. `Failover` (the state machine)
builds the route of each state and swaps it, synchronously, on every transition; the
facade only says what a call is and hands it to the current route:

- memory-only, `Direct`: every call on the fallback; reads and writes without an await.
- closed, `Primary`: the primary; a `BackendError` fails over, then the call takes the
  new route; writes and changes are remembered (the recent window).
- open (an outage), `Journaling`: writes and changes are journaled first, entries get
  the outage TTL cap, then the fallback runs them; every call restarts a dead probe.
- after ``close()`` of a cache that had a primary, `Journaling` without a probe: the
  journal waits for the next ``initialize()``; reads need no await.
- the last replay round, `Gated`: reads go on; writes and changes wait at the gate,
  then take the new route.

Reads are ``read``/``read_many``; writes ``write``/``write_many``, and a loader's
fenced ``claim``/``fill`` (SPEC §12); changes (deletes, pattern and namespace
invalidations, ``clear``) ``change``; queries that change nothing and need no journal
(``ttl``, ``scan``) ``query``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeGuard, TypeVar

from .backends.base import (
    Backend,
    SupportsEvents,
    SupportsFence,
    SupportsLock,
    SupportsNowait,
    SupportsTags,
)
from .events import CacheEvent
from .exceptions import BackendError

if TYPE_CHECKING:
    import asyncio

    from ._failover import Failover

__all__ = ["Direct", "Gated", "Journaling", "Primary", "Route"]

T = TypeVar("T")
Entries = Sequence[tuple[str, bytes, float | None]]
Events = list[tuple[str, bytes]]


class Route:
    """The fallback, directly: a memory-only cache. Other routes refine it."""

    name = "memory-only"
    lock: SupportsLock | None = None
    """A backend for the cross-process load lock, when this route has one."""
    nowait_complete = True
    """Whether ``nowait`` knows every entry (the memory tier: its miss is a miss) or
    only some (the near cache: a miss must still ask the primary)."""

    def __init__(self, failover: Failover) -> None:
        self.failover = failover
        self.fallback: Backend = failover.fallback
        self.backend: Backend = failover.fallback
        """The backend this route's calls are served by."""
        nowait = self.fallback if isinstance(self.fallback, SupportsNowait) else None
        self.nowait: Callable[[str], bytes | None] | None = (
            nowait.get_nowait if nowait is not None else None
        )
        """A read that needs no await, when the route has one (else ``None``)."""
        self.write_nowait: Callable[[str, bytes, float | None], None] | None = (
            nowait.set_nowait if nowait is not None else None
        )
        self.versions_nowait: Callable[[Sequence[str]], list[bytes | None] | None] | None = getattr(
            nowait, "tag_versions_nowait", None
        )
        """Tag versions without an await, when the store has them (the memory tier; the
        near cache, which answers ``None`` when it does not hold them all)."""

    async def read(self, key: str) -> bytes | None:
        return await self.fallback.get(key)

    async def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.fallback.get_many(keys)

    async def write(self, key: str, data: bytes, ttl: float | None) -> None:
        await self.fallback.set(key, data, ttl)

    async def write_many(self, entries: Entries) -> None:
        await self.fallback.set_many(entries)

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        return await claim_on(self.fallback, key, marker, ttl)

    async def fill(
        self, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
    ) -> bool:
        return await fill_on(self.fallback, key, expected, data, ttl, whole)

    async def change(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        everything: bool = False,
    ) -> T:
        return await call(self.fallback)

    async def query(self, call: Callable[[Backend], Awaitable[T]]) -> T:
        return await call(self.fallback)

    async def tag_versions(self, tags: Sequence[str], create: bool) -> list[bytes | None]:
        return await versions_on(self.fallback, tags, create)

    async def read_tagged(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        """A read with the current versions of ``tags``: one round trip where possible."""
        return await read_tagged_on(self.fallback, key, tags)

    async def publish(self, event: CacheEvent, maxlen: int) -> None:
        """Append an invalidation event to the log of the backend that serves."""
        if _events_of(self.fallback):
            await self.fallback.append_event(event.encode(), maxlen)

    async def delete_publishing(self, keys: Sequence[str], event: CacheEvent, maxlen: int) -> int:
        """Delete ``keys``, then publish ``event``: one round trip where the primary can
        (`Primary`); a change and a publication as this route makes them elsewhere."""
        removed = await self.change(lambda b: b.delete_many(keys), keys=keys)
        await self.publish(event, maxlen)
        return removed

    async def read_events(self, after: str, count: int, block: float) -> Events | None:
        """Events after ``after``; ``None`` while the log cannot be read (an outage)."""
        if _events_of(self.fallback):
            return await self.fallback.read_events(after, count, block)
        return None

    async def event_bounds(self) -> tuple[bool, tuple[str, str] | None]:
        """Whether the log can be read now, and its oldest and newest ids."""
        if _events_of(self.fallback):
            return True, await self.fallback.event_bounds()
        return False, None

    async def failed(self, exc: BackendError) -> None:
        """A call this route made on its backend failed (the lock's, say)."""
        await self.failover.failed(exc)


Direct = Route


_abilities: dict[tuple[type, type], bool] = {}


def _can(backend: Backend, ability: type) -> bool:
    """``isinstance(backend, ability)``, remembered per backend class: a check against a
    runtime-checkable Protocol inspects every member (microseconds), once per call."""
    key = (type(backend), ability)
    known = _abilities.get(key)
    if known is None:
        known = _abilities[key] = isinstance(backend, ability)
    return known


def _tags_of(backend: Backend) -> TypeGuard[SupportsTags]:
    return _can(backend, SupportsTags)


def _fence_of(backend: Backend) -> TypeGuard[SupportsFence]:
    return _can(backend, SupportsFence)


def _events_of(backend: Backend) -> TypeGuard[SupportsEvents]:
    return _can(backend, SupportsEvents)


async def versions_on(backend: Backend, tags: Sequence[str], create: bool) -> list[bytes | None]:
    """`SupportsTags.tag_versions`; a backend without tags has no versions (all stale)."""
    if _tags_of(backend):
        return await backend.tag_versions(tags, create=create)
    return [None] * len(tags)


async def read_tagged_on(
    backend: Backend, key: str, tags: Sequence[str]
) -> tuple[bytes | None, list[bytes | None]]:
    if _tags_of(backend):
        return await backend.get_with_versions(key, tags)
    return await backend.get(key), [None] * len(tags)


async def bump_on(backend: Backend, tags: Sequence[str]) -> int:
    """`SupportsTags.bump_tags`; returns how many tags were invalidated."""
    if _tags_of(backend):
        await backend.bump_tags(tags)
    return len(tags)


async def claim_on(backend: Backend, key: str, marker: bytes, ttl: float) -> bytes | None:
    """`SupportsFence.claim`; a backend without fences claims nothing (loads unfenced)."""
    if _fence_of(backend):
        return await backend.claim(key, marker, ttl)
    return None


async def fill_on(
    backend: Backend, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
) -> bool:
    """`SupportsFence.fill`; a backend without fences gets a plain write."""
    if _fence_of(backend):
        return await backend.fill(key, expected, data, ttl, whole=whole)
    if data is not None:
        await backend.set(key, data, ttl)
    return data is not None


class Primary(Route):
    """The primary serves; a `BackendError` fails over and the call takes the new route."""

    name = "primary"

    def __init__(self, failover: Failover, primary: Backend) -> None:
        super().__init__(failover)
        self.primary = self.backend = primary
        self.nowait = self.write_nowait = None
        self.lock = primary if isinstance(primary, SupportsLock) else None

    async def read(self, key: str) -> bytes | None:
        try:
            return await self.primary.get(key)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.read(key)

    async def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            return await self.primary.get_many(keys)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.read_many(keys)

    async def write(self, key: str, data: bytes, ttl: float | None) -> None:
        try:
            await self.primary.set(key, data, ttl)
        except BackendError as exc:
            await self.failover.failed(exc)
            await self.failover.route.write(key, data, ttl)
        else:
            self.failover.remember(key)

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        try:
            return await claim_on(self.primary, key, marker, ttl)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.claim(key, marker, ttl)

    async def fill(
        self, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
    ) -> bool:
        try:
            stored = await fill_on(self.primary, key, expected, data, ttl, whole)
        except BackendError as exc:
            await self.failover.failed(exc)
            # The claim was made on the primary: the fallback does not hold it, so
            # this stores nothing, as a fence must when it cannot tell.
            return await self.failover.route.fill(key, expected, data, ttl, whole)
        if stored:
            self.failover.remember(key)
        return stored

    async def write_many(self, entries: Entries) -> None:
        try:
            await self.primary.set_many(entries)
        except BackendError as exc:
            await self.failover.failed(exc)
            await self.failover.route.write_many(entries)
        else:
            for key, _, _ in entries:
                self.failover.remember(key)

    async def change(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        everything: bool = False,
    ) -> T:
        failover = self.failover
        try:
            result = await call(self.primary)
        except BackendError as exc:
            await failover.failed(exc)
            return await failover.route.change(
                call, keys=keys, pattern=pattern, tags=tags, everything=everything
            )
        if everything:
            failover.remember(None)
        elif pattern is not None:
            failover.remember(pattern, pattern=True)
        else:
            for key in keys:
                failover.remember(key)
            for tag in tags:
                failover.remember(tag, tag=True)
        return result

    async def tag_versions(self, tags: Sequence[str], create: bool) -> list[bytes | None]:
        try:
            return await versions_on(self.primary, tags, create)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.tag_versions(tags, create)

    async def read_tagged(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        try:
            return await read_tagged_on(self.primary, key, tags)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.read_tagged(key, tags)

    async def publish(self, event: CacheEvent, maxlen: int) -> None:
        primary = self.primary
        if not _events_of(primary):
            return
        try:
            await primary.append_event(event.encode(), maxlen)
        except BackendError as exc:
            await self.failover.failed(exc)
            await self.failover.route.publish(event, maxlen)  # journaled for failback

    async def delete_publishing(self, keys: Sequence[str], event: CacheEvent, maxlen: int) -> int:
        primary = self.primary
        if not _events_of(primary):
            return await super().delete_publishing(keys, event, maxlen)
        try:
            removed = await primary.delete_publishing(keys, event.encode(), maxlen)
        except BackendError as exc:
            # Either half may have been done: the fallback route deletes and journals
            # both again, and the event is published (replayed) at failback.
            await self.failover.failed(exc)
            return await self.failover.route.delete_publishing(keys, event, maxlen)
        for key in keys:
            self.failover.remember(key)
        return removed

    async def read_events(self, after: str, count: int, block: float) -> Events | None:
        primary = self.primary
        if not _events_of(primary):
            return None
        try:
            return await primary.read_events(after, count, block)
        except BackendError as exc:
            await self.failover.failed(exc)
        return None

    async def event_bounds(self) -> tuple[bool, tuple[str, str] | None]:
        primary = self.primary
        if not _events_of(primary):
            return False, None
        try:
            return True, await primary.event_bounds()
        except BackendError as exc:
            await self.failover.failed(exc)
        return False, None

    async def query(self, call: Callable[[Backend], Awaitable[T]]) -> T:
        try:
            return await call(self.primary)
        except BackendError as exc:
            await self.failover.failed(exc)
        return await self.failover.route.query(call)


class Journaling(Route):
    """The fallback serves in place of a primary; every change is journaled first.

    During an outage (``probe=True``) entries get the outage TTL cap, and each call
    makes sure the probe runs (its event loop may have ended). After ``close()`` of a
    cache that had a primary (``probe=False``) there is nothing to probe: the journal
    waits for the next ``initialize()``.
    """

    name = "journaling"

    def __init__(self, failover: Failover, *, probe: bool) -> None:
        super().__init__(failover)
        self.probe = probe
        if probe:  # reads must pass through read(), which keeps the probe alive
            self.nowait = None
        self.write_nowait = None  # writes are journaled

    def _watch(self) -> None:
        if self.probe:
            self.failover.ensure_probe()

    async def read(self, key: str) -> bytes | None:
        self._watch()
        return await self.fallback.get(key)

    async def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._watch()
        return await self.fallback.get_many(keys)

    async def write(self, key: str, data: bytes, ttl: float | None) -> None:
        self._watch()
        failover = self.failover
        failover.journal.add_keys((key,))
        await self.fallback.set(key, data, failover.cap_ttl(ttl))

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        self._watch()
        return await claim_on(self.fallback, key, marker, self.failover.cap_ttl(ttl) or ttl)

    async def fill(
        self, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
    ) -> bool:
        self._watch()
        failover = self.failover
        failover.journal.add_keys((key,))
        return await fill_on(self.fallback, key, expected, data, failover.cap_ttl(ttl), whole)

    async def write_many(self, entries: Entries) -> None:
        self._watch()
        failover = self.failover
        failover.journal.add_keys([key for key, _, _ in entries])
        cap = failover.cap_ttl
        await self.fallback.set_many([(k, v, cap(t)) for k, v, t in entries])

    async def change(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        everything: bool = False,
    ) -> T:
        self._watch()
        # Journaled before the fallback runs the call, so a failback that happens
        # meanwhile still replays it.
        journal = self.failover.journal
        if everything:
            journal.add_everything()
        elif pattern is not None:
            journal.add_pattern(pattern)
        else:
            journal.add_keys(keys)
            journal.add_tags(tags)
        return await call(self.fallback)

    async def tag_versions(self, tags: Sequence[str], create: bool) -> list[bytes | None]:
        self._watch()
        return await versions_on(self.fallback, tags, create)

    async def read_tagged(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        self._watch()
        return await read_tagged_on(self.fallback, key, tags)

    async def publish(self, event: CacheEvent, maxlen: int) -> None:
        self._watch()  # published on the primary at failback, marked as replayed
        self.failover.journal.add_event(replace(event, replayed=True).encode(), maxlen)

    async def read_events(self, after: str, count: int, block: float) -> Events | None:
        self._watch()
        return None  # the log is the primary's: readers wait for it

    async def event_bounds(self) -> tuple[bool, tuple[str, str] | None]:
        self._watch()
        return False, None

    async def query(self, call: Callable[[Backend], Awaitable[T]]) -> T:
        self._watch()
        return await call(self.fallback)


class Gated(Route):
    """The last replay round before a failback: reads go on, writes wait at the gate.

    A write or change made now could slip between the replay and the switch; it waits
    until the round is over, then takes whichever route is current.
    """

    name = "gated"

    def __init__(self, failover: Failover, gate: asyncio.Event) -> None:
        super().__init__(failover)
        self.gate = gate
        self.nowait = self.write_nowait = None

    async def write(self, key: str, data: bytes, ttl: float | None) -> None:
        await self.gate.wait()
        await self.failover.route.write(key, data, ttl)

    async def write_many(self, entries: Entries) -> None:
        await self.gate.wait()
        await self.failover.route.write_many(entries)

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        await self.gate.wait()
        return await self.failover.route.claim(key, marker, ttl)

    async def publish(self, event: CacheEvent, maxlen: int) -> None:
        await self.gate.wait()
        await self.failover.route.publish(event, maxlen)

    async def read_events(self, after: str, count: int, block: float) -> Events | None:
        return None

    async def event_bounds(self) -> tuple[bool, tuple[str, str] | None]:
        return False, None

    async def fill(
        self, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
    ) -> bool:
        await self.gate.wait()
        return await self.failover.route.fill(key, expected, data, ttl, whole)

    async def change(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        everything: bool = False,
    ) -> T:
        await self.gate.wait()
        return await self.failover.route.change(
            call, keys=keys, pattern=pattern, tags=tags, everything=everything
        )

    async def tag_versions(self, tags: Sequence[str], create: bool) -> list[bytes | None]:
        if create:  # a version made now could be lost with the fallback at the switch
            await self.gate.wait()
            return await self.failover.route.tag_versions(tags, create)
        return await versions_on(self.fallback, tags, create)
