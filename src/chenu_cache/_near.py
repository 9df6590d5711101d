"""The near cache: Redis entries kept in process memory, never served stale (SPEC §13).

`NearCache` holds what this process read from the primary, each copy until the entry's
own expiry in Redis at the latest, bounded in entries and bytes (least recently used
out first). It is the `TrackingSink` of the primary's tracking link, and serves only
while that link vouches for it: from ``tracking_up`` until ``tracking_down``, and no
later than the last heartbeat's grace. Every change it hears of, and every change this
process makes, drops the local copy at once.

A read that misses installs a placeholder for its key *before* it asks Redis; any
invalidation of the key meanwhile removes it, and the reply is kept only if the
placeholder survived: a reply that left Redis before a write, arriving after that
write's invalidation, is never stored.

The `Near` route (`_near_route`) is the only caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

from ._glob import compile_glob
from ._keys import NAMESPACE_SEPARATOR, validate_namespace
from .backends.base import Backend, SupportsTracking, Tracking, TrackingSink
from .exceptions import ConfigurationError
from .stats import NearCacheStatistics

__all__ = ["NearCache", "NearCacheOptions"]

_ENTRY_OVERHEAD = 120
"""Bytes an entry costs beyond its key and value (the dict slot, the tuple, the floats);
what ``max_bytes`` counts with, measured with tracemalloc."""


@dataclass(frozen=True)
class NearCacheOptions:
    """How a near cache is bounded; ``FallbackCache(near_cache=NearCacheOptions(...))``.

    ``near_cache=True`` takes the defaults.
    """

    max_entries: int = 10_000
    """Entries held at most; the least recently used goes first."""
    max_bytes: int = 64 * 1024 * 1024
    """Bytes held at most (keys, values and about 120 bytes of bookkeeping each)."""
    namespaces: Collection[str] | None = None
    """Only keys of these namespaces are held near (``None``: every key). Redis then
    sends this process invalidations for those namespaces only."""
    heartbeat: float = 0.25
    """Seconds between pings of the tracking link. A link silent for two of them plus
    the command timeout is given up for lost: the near cache is bypassed until it
    answers again."""

    def __post_init__(self) -> None:
        if type(self.max_entries) is not int or self.max_entries < 1:
            raise ConfigurationError("near cache max_entries must be a positive int")
        if type(self.max_bytes) is not int or self.max_bytes < 1:
            raise ConfigurationError("near cache max_bytes must be a positive int")
        if not (isinstance(self.heartbeat, int | float) and 0 < self.heartbeat <= 60):
            raise ConfigurationError("near cache heartbeat must be in (0, 60] seconds")
        if self.namespaces is not None:
            if isinstance(self.namespaces, str):
                raise ConfigurationError("near cache namespaces must be a collection of names")
            for name in self.namespaces:
                validate_namespace(name)


class _Placeholder:
    """A read on its way to the primary; any invalidation of its key removes it."""

    __slots__ = ("started",)

    def __init__(self, started: float) -> None:
        self.started = started


class NearCache:
    """Local copies of primary entries, coherent through a `Tracking` link."""

    def __init__(self, options: NearCacheOptions) -> None:
        self.options = options
        self._max_entries = options.max_entries
        self._max_bytes = options.max_bytes
        names = options.namespaces
        self._allowed: tuple[str, ...] | None = (
            None if names is None else tuple(sorted(n + NAMESPACE_SEPARATOR for n in names))
        )
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._pending: dict[str, _Placeholder] = {}
        self._bytes = 0
        self._coherent_until = 0.0
        self._primary: Backend | None = None
        self._tracking: Tracking | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.flushes = 0
        self.evictions = 0
        self.bypassed = 0
        self.refused = False
        """The primary refused the near cache's read (an ACL without scripts): bypass."""

    # -- the hit path ----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The local copy of ``key`` if it may be served now, else ``None``: never waits."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if now < entry[1] and now < self._coherent_until:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]
        if now >= entry[1]:
            self._drop(key)
        return None  # past the heartbeat's grace: kept, bypassed until it answers

    # -- the miss path ---------------------------------------------------------------

    def begin(self, key: str) -> _Placeholder | None:
        """A placeholder for a read of ``key`` about to ask the primary, or ``None`` when
        its reply must not be kept (not coherent now, not a near namespace)."""
        if not self._serving(key):
            return None
        self.misses += 1
        token = self._pending.get(key)
        if token is None:
            token = self._pending[key] = _Placeholder(time.monotonic())
        return token

    def complete(
        self, key: str, token: _Placeholder, data: bytes | None, ttl: float | None
    ) -> None:
        """Keep the reply of the read ``token`` began, if nothing invalidated it since."""
        if self._pending.get(key) is not token:
            return
        del self._pending[key]
        if data is None or not time.monotonic() < self._coherent_until:
            return
        if ttl is None:
            deadline = math.inf
        elif ttl > 0:
            # From before the read was sent: Redis measured the TTL later than that, so
            # the copy expires no later than the entry, however long the reply took.
            deadline = token.started + ttl
        else:
            return
        self._store(key, data, deadline)

    def abandon(self, key: str, token: _Placeholder) -> None:
        """The read ``token`` began failed: its placeholder goes."""
        if self._pending.get(key) is token:
            del self._pending[key]

    def _serving(self, key: str) -> bool:
        allowed = self._allowed
        if (allowed is not None and not key.startswith(allowed)) or self.refused:
            return False
        tracking = self._tracking
        if tracking is None or not tracking.running():
            self._start()  # (again: its event loop ended)
        elif tracking.loop is asyncio.get_running_loop() and (
            time.monotonic() < self._coherent_until
        ):
            return True
        # Not coherent now, or the link runs on another thread's loop, where its
        # invalidations could land between a placeholder's check and the store.
        self.bypassed += 1
        return False

    def _store(self, key: str, data: bytes, deadline: float) -> None:
        size = len(key) + len(data) + _ENTRY_OVERHEAD
        if size > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(key) + len(old[0]) + _ENTRY_OVERHEAD
        entries = self._entries
        while entries and (
            len(entries) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            gone, (value, _) = entries.popitem(last=False)
            self._bytes -= len(gone) + len(value) + _ENTRY_OVERHEAD
            self.evictions += 1
        entries[key] = (data, deadline)
        self._bytes += size

    def _drop(self, key: str) -> None:
        self._pending.pop(key, None)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(key) + len(old[0]) + _ENTRY_OVERHEAD

    # -- changes made by this process ------------------------------------------------

    def discard(self, keys: Collection[str]) -> None:
        """This process changed ``keys``: its next read goes to the primary."""
        for key in keys:
            self._drop(key)

    def discard_matching(self, pattern: str) -> None:
        matches = compile_glob(pattern)
        for key in [k for k in (*self._entries, *self._pending) if matches(k)]:
            self._drop(key)

    def flush(self) -> None:
        """Empty it, placeholders included: no read begun before is kept."""
        if self._entries or self._pending:
            self.flushes += 1
        self._entries.clear()
        self._pending.clear()
        self._bytes = 0

    # -- the tracking link (TrackingSink) --------------------------------------------

    def attach(self, primary: Backend | None) -> None:
        """Track ``primary`` from now on (``None``: nothing to be near to)."""
        if primary is self._primary:
            return
        self._primary = primary
        self._stop_tracking()

    def _start(self) -> None:
        primary: object = self._primary  # a Backend need not track
        self._stop_tracking()
        if not isinstance(primary, SupportsTracking):
            return
        prefixes = [""] if self._allowed is None else list(self._allowed)
        tracking = primary.tracking(_Reports(self), prefixes, self.options.heartbeat)
        self._tracking = tracking
        tracking.start()

    def _stop_tracking(self) -> None:
        tracking, self._tracking = self._tracking, None
        self._lost()
        if tracking is None or not tracking.running():
            return
        loop = tracking.loop
        if loop is None:
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is here:
            self._closing.add(task := loop.create_task(tracking.close()))
            task.add_done_callback(self._closing.discard)
        else:  # Task.cancel() belongs to the task's own loop
            loop.call_soon_threadsafe(lambda: loop.create_task(tracking.close()))

    async def close(self) -> None:
        """Stop tracking (``initialize()`` or the next read starts it again)."""
        tracking, self._tracking = self._tracking, None
        self._lost()
        if tracking is not None:
            await tracking.close()

    def _lost(self) -> None:
        self._coherent_until = 0.0
        self.flush()

    def reported(self, reports: _Reports) -> bool:
        """Whether ``reports`` come from the link tracking now (not one replaced)."""
        tracking = self._tracking
        return tracking is not None and tracking.sink is reports

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> NearCacheStatistics:
        """The near cache's counters and size now (SPEC §13's ``nearCache``)."""
        tracking = self._tracking
        return NearCacheStatistics(
            enabled=True,
            tracking=time.monotonic() < self._coherent_until,
            hits=self.hits,
            misses=self.misses,
            invalidations=self.invalidations,
            flushes=self.flushes,
            evictions=self.evictions,
            bypassed=self.bypassed,
            size=len(self._entries),
            bytes=self._bytes,
            links=tracking.links if tracking is not None else 0,
            last_error=tracking.last_error if tracking is not None else None,
        )


class _Reports(TrackingSink):
    """One tracking link's reports to its near cache, heeded only while that link is
    the current one: a replaced link, closing, must not empty its successor's copies."""

    __slots__ = ("_near",)

    def __init__(self, near: NearCache) -> None:
        self._near = near

    def tracking_up(self, coherent_until: float) -> None:
        near = self._near
        if near.reported(self):
            near.flush()
            near._coherent_until = coherent_until

    def tracking_extended(self, coherent_until: float) -> None:
        near = self._near
        if near.reported(self) and near._coherent_until > 0:
            near._coherent_until = coherent_until

    def tracking_down(self) -> None:
        near = self._near
        if near.reported(self):
            near._lost()

    def invalidated(self, keys: list[str] | None) -> None:
        near = self._near
        if not near.reported(self):
            return
        if keys is None:
            near.flush()
            return
        near.invalidations += len(keys)
        for key in keys:
            near._drop(key)
