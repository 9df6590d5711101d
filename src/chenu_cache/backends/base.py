"""The `Backend` protocol: the storage primitives every tier provides."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Backend",
    "BackendStats",
    "DeclaresRecentWindow",
    "SupportsLock",
    "SupportsNowait",
    "SupportsStatsNowait",
    "SupportsTracking",
    "Tracking",
    "TrackingSink",
]


@dataclass(frozen=True)
class BackendStats:
    """A backend's own counters, as seen by this process.

    ``entries`` and ``bytes`` are ``None`` where counting them would be costly (Redis).
    ``details`` carries backend-specific facts (Redis's ``used_memory_human``, say).
    """

    name: str
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    entries: int | None = None
    bytes: int | None = None
    details: Mapping[str, object] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """Byte storage with expiry, addressed by logical keys.

    The contract, which both built-in backends and any third-party one must honour
    (``tests/contract`` checks it):

    * Keys are the cache's logical keys (``"user:123"``); a backend that shares its
      store with other software adds its own prefix and never reports, scans or deletes
      keys outside it. Values are opaque ``bytes``, returned exactly as stored.
    * TTLs are in seconds as ``float`` (millisecond precision), always ``> 0``; ``None``
      means the entry never expires. An expired entry is indistinguishable from a
      missing one.
    * Patterns are Redis globs (``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\``
      escapes), already validated by the caller, with Redis's matching rules.
    * ``scan`` pages with an integer cursor: start at ``0``, stop when it returns ``0``.
      Every key present for the whole scan is returned at least once; a page may be
      empty before the end.
    * A backend that cannot serve (unreachable, too slow, not serving) raises a
      `BackendError` subclass, and the facade fails over. One that answers but refuses
      a command for its key or arguments raises `CommandRefusedError` (no failover;
      reads are misses); an argument out of range, `ValidationError`. Nothing else
      escapes; methods never block the event loop.
    """

    @property
    def name(self) -> str:
        """Short name for statistics and logs, e.g. ``"redis"`` or ``"memory"``."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the stored bytes, or ``None`` when the key is missing or expired."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return one result per key, in order, as `get()` would (one round trip)."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        """Store several ``(key, value, ttl)`` entries (one round trip)."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Delete the keys; return how many existed (one round trip)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Remaining seconds to live; ``inf`` without expiry; ``None`` when missing."""
        ...

    async def scan(self, pattern: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        """Return ``(next_cursor, keys)`` for one page of keys matching ``pattern``."""
        ...

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every key matching ``pattern``; return how many were deleted."""
        ...

    async def clear(self) -> int:
        """Delete every key this backend owns (and only those); return the count."""
        ...

    async def stats(self) -> BackendStats:
        """Counters for statistics; may ask the server for its own figures."""
        ...

    async def ping(self) -> float:
        """Check the backend answers; return the round-trip time in seconds."""
        ...

    async def close(self) -> None:
        """Release connections and resources; the backend is not used afterwards."""
        ...


@runtime_checkable
class SupportsLock(Protocol):
    """An optional ability: a lock shared by every process using the same store.

    ``acquire_lock`` succeeds for one token at a time and the lock lapses after
    ``ttl`` seconds, so a holder that dies does not block the others for ever;
    ``release_lock`` releases it only if ``token`` still holds it. Lock keys live
    apart from entries: scans never list them.
    """

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock on ``key`` for ``ttl`` seconds; return whether it was free."""
        ...

    async def release_lock(self, key: str, token: str) -> bool:
        """Release the lock on ``key`` if ``token`` holds it; return whether it did."""
        ...


@runtime_checkable
class SupportsFence(Protocol):
    """An optional ability: compare-and-set writes, which fence loaders (SPEC §12).

    A loader claims an absent key with a marker before it runs, and writes its value
    only if the key still holds what it started from: an invalidation (which deletes
    the marker) or a write made meanwhile wins. Both are atomic in the store, for
    every process using it. Without this ability the cache's loads are not fenced.
    """

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        """Store ``marker`` for ``ttl`` seconds if ``key`` is absent and return ``None``;
        else change nothing and return what ``key`` holds."""
        ...

    async def fill(
        self, key: str, expected: bytes, value: bytes | None, ttl: float | None, *, whole: bool
    ) -> bool:
        """If ``key`` holds ``expected`` (all of it when ``whole``, else as its first
        bytes), store ``value`` with ``ttl`` (delete ``key`` when ``value`` is
        ``None``) and return ``True``; else change nothing and return ``False``."""
        ...


def new_tag_version() -> bytes:
    """A fresh tag version: random, so that no two processes ever make the same one."""
    return secrets.token_hex(8).encode()


@runtime_checkable
class SupportsTags(Protocol):
    """An optional ability: tag versions shared by every process using the store (SPEC §14).

    A version is opaque bytes. ``tag_versions`` reads them (``None`` for a tag that has
    none), first giving each missing one a fresh version when ``create`` is true;
    ``bump_tags`` gives each tag a new one. A version may be lost (evicted, expired):
    the entries stamped with it then read as stale, never as fresh. Version keys live
    apart from entries: scans never list them.
    """

    async def tag_versions(self, tags: Sequence[str], *, create: bool) -> list[bytes | None]:
        """The current version of each tag, in order."""
        ...

    async def bump_tags(self, tags: Sequence[str]) -> None:
        """Give each tag a new version."""
        ...

    async def get_with_versions(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        """``get(key)`` and ``tag_versions(tags, create=False)`` together: in one round
        trip where the store allows it."""
        ...


@runtime_checkable
class SupportsEvents(Protocol):
    """An optional ability: a bounded, ordered log of events shared by every process
    using the store (a Redis Stream; SPEC §16).

    Ids are the store's (``"<ms>-<seq>"``), increasing. ``read_events`` returns the
    events strictly after ``after``, waiting up to ``block`` seconds for one (a store
    may wait less; ``block <= 0``: not at all); ``event_bounds`` the ids of the oldest
    and newest events held (``None`` for an empty log).
    """

    async def append_event(self, data: bytes, maxlen: int) -> str:
        """Append ``data``, keeping about the last ``maxlen`` events; return its id."""
        ...

    async def delete_publishing(self, keys: Sequence[str], data: bytes, maxlen: int) -> int:
        """Delete ``keys``, then append ``data`` (the event saying so), in one round trip
        where the store allows; return how many keys existed."""
        ...

    async def read_events(self, after: str, count: int, block: float) -> list[tuple[str, bytes]]:
        """Up to ``count`` events after ``after``, in order."""
        ...

    async def event_bounds(self) -> tuple[str, str] | None:
        """The oldest and the newest id the log holds."""
        ...


@runtime_checkable
class SupportsNowait(Protocol):
    """An optional ability: reads and writes that never wait (an in-process store).

    ``get_nowait`` and ``set_nowait`` behave exactly as ``get`` and ``set`` but are plain
    functions: the facade answers from such a fallback without an ``await``.
    """

    def get_nowait(self, key: str) -> bytes | None:
        """`Backend.get`, without the coroutine."""
        ...

    def set_nowait(self, key: str, value: bytes, ttl: float | None) -> None:
        """`Backend.set`, without the coroutine."""
        ...


@runtime_checkable
class DeclaresRecentWindow(Protocol):
    """An optional declaration: how many seconds of acknowledged changes a failover of
    this backend should replay (its deployment may lose them: 10 s behind Sentinel)."""

    recent_window: float


@runtime_checkable
class SupportsStatsNowait(Protocol):
    """An optional ability: this process's counters at once, with no I/O.

    What ``stats()`` gives, minus anything only the server can tell (Redis's memory
    use, its clients): metrics exporters read it on every scrape.
    """

    def stats_nowait(self) -> BackendStats:
        """This process's counters for the backend, without asking any server."""
        ...


class TrackingSink(Protocol):
    """What a `Tracking` reports to: the near cache (SPEC §13)."""

    def tracking_up(self, coherent_until: float) -> None:
        """Every change from now on will be reported: start empty; coherent until that
        `time.monotonic` instant unless extended."""

    def tracking_extended(self, coherent_until: float) -> None:
        """Every change made before a heartbeat was reported: coherent until then."""

    def tracking_down(self) -> None:
        """Changes may go unreported: empty, and bypass until `tracking_up`."""

    def invalidated(self, keys: list[str] | None) -> None:
        """These logical keys changed (``None``: any may have, after a FLUSHDB)."""


class Tracking(Protocol):
    """A running link that reports every change under some prefixes to a sink."""

    up: bool
    """Whether every link tracks now."""
    links: int
    """Connections tracking now (one per primary)."""
    last_error: str | None
    """Why the link last went down (``"Type: message"``), if it ever did."""
    sink: TrackingSink
    """Where it reports."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop it runs on, once started."""

    def start(self) -> None:
        """Begin, on the running event loop; never raises for a server that is down."""

    def running(self) -> bool:
        """Whether it still runs on a live event loop."""

    async def close(self) -> None:
        """Stop, and report `TrackingSink.tracking_down`."""


@runtime_checkable
class SupportsTracking(Protocol):
    """An optional ability: server-assisted change tracking, for a near cache.

    ``get_with_ttl`` reads a value and its remaining time to live atomically
    (``(None, None)`` when absent; a TTL of ``None``: no expiry).
    """

    def tracking(self, sink: TrackingSink, prefixes: Sequence[str], heartbeat: float) -> Tracking:
        """A `Tracking` of the logical key ``prefixes`` (``""``: every key), not started."""
        ...

    async def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        """`Backend.get` with the entry's remaining seconds, read at the same instant."""
        ...

    def tag_key(self, tag: str) -> str:
        """The key (as `get_with_ttl` takes it, and invalidations name it) that holds the
        version of ``tag`` (`SupportsTags`), so a near cache may hold versions too."""
        ...

    async def get_many_with_ttl(
        self, keys: Sequence[str]
    ) -> list[tuple[bytes | None, float | None]]:
        """`get_with_ttl` of each key, in one round trip where the store allows."""
        ...
