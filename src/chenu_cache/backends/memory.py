"""In-process storage: least-recently-used eviction and per-entry expiry."""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from .._glob import compile_glob
from ..exceptions import ConfigurationError, ValueTooLargeError
from .base import (
    Backend,
    BackendStats,
    SupportsEvents,
    SupportsFence,
    SupportsNowait,
    SupportsStatsNowait,
    SupportsTags,
    new_tag_version,
)

__all__ = ["MemoryBackend"]

# An entry is (value, expires_at or None). Tuples, not objects: they are cheaper to
# build and to read on the hit path, and two fields keep an entry small; the expiry
# heap shares the entry's float.
_Entry = tuple[bytes, "float | None"]

# Scan order: a key's hash, made non-negative and offset by one (0 is "start").
# Stable while the process lives, and independent of LRU reordering.
_HASH_MASK = (1 << 63) - 1

# Expired entries reclaimed per write, at most: more than one, so the expiry buckets drain
# faster than writes fill it, yet bounded, so one write never pays for a mass expiry.
_SWEEP_PER_WRITE = 32

_TICK = 1.0  # seconds per expiry bucket


class MemoryBackend(
    Backend, SupportsEvents, SupportsFence, SupportsNowait, SupportsStatsNowait, SupportsTags
):
    """LRU cache of bytes with per-entry TTL, bounded by entries and optionally by bytes.

    Expiry is lazy (an expired entry is dropped when read) plus an amortised sweep: a
    heap ordered by expiry time is drained a little on every write, so expired entries
    never pile up and no timer or task runs per key. ``clock`` must be monotonic; inject
    a fake one in tests. Not thread-safe: use it from one event loop, which needs no
    lock because no method awaits while touching the store.
    """

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ConfigurationError("max_bytes must be at least 1 or None")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        # Expiry buckets: keys by the tick (_TICK seconds) in which they expire, and a
        # heap of the ticks that have keys. A key costs one list slot here, not a
        # (time, key) tuple per entry: the index is what per-entry memory is made of.
        self._buckets: dict[int, list[str]] = {}
        self._ticks: list[int] = []
        self._bucketed = 0  # keys in buckets, current or outdated by a later write
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        # Tag versions, apart from entries (never scanned or counted as entries); at
        # most max_entries of them, the oldest dropped first, which makes its entries
        # stale, never fresh.
        self._tags: dict[str, bytes] = {}
        # The event log of a memory-only cache (SupportsEvents): (ms, seq, data).
        self._events: deque[tuple[int, int, bytes]] = deque()
        self._last_event = (0, 0)

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> bytes | None:
        """`get()` without the coroutine: the store never has to wait."""
        entry = self._data.get(key)
        if entry is None:
            self._misses += 1
            return None
        expires_at = entry[1]
        if expires_at is not None and expires_at <= self._clock():
            self._remove(key, entry)
            self._expirations += 1
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return entry[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get_nowait(key) for key in keys]

    # -- the event log (SupportsEvents) -------------------------------------------------

    async def append_event(self, data: bytes, maxlen: int) -> str:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self._last_event
        seq = last_seq + 1 if ms <= last_ms else 0
        ms = max(ms, last_ms)
        self._last_event = (ms, seq)
        self._events.append((ms, seq, data))
        while len(self._events) > maxlen:
            self._events.popleft()
        return f"{ms}-{seq}"

    async def delete_publishing(self, keys: Sequence[str], data: bytes, maxlen: int) -> int:
        removed = await self.delete_many(keys)
        await self.append_event(data, maxlen)
        return removed

    async def read_events(self, after: str, count: int, block: float) -> list[tuple[str, bytes]]:
        mark = _event_id(after)
        found = [(f"{ms}-{seq}", data) for ms, seq, data in self._events if (ms, seq) > mark]
        if not found and block > 0:
            await asyncio.sleep(min(block, 0.05))  # in-process: a short poll stands in
            found = [(f"{ms}-{seq}", data) for ms, seq, data in self._events if (ms, seq) > mark]
        return found[:count]

    async def event_bounds(self) -> tuple[str, str] | None:
        if not self._events:
            return None
        first, last = self._events[0], self._events[-1]
        return f"{first[0]}-{first[1]}", f"{last[0]}-{last[1]}"

    # -- tags (SupportsTags) -----------------------------------------------------------

    def tag_versions_nowait(self, tags: Sequence[str]) -> list[bytes | None]:
        """``tag_versions(tags, create=False)`` without the coroutine."""
        versions = self._tags
        return [versions.get(tag) for tag in tags]

    async def tag_versions(self, tags: Sequence[str], *, create: bool) -> list[bytes | None]:
        versions = self._tags
        if create:
            for tag in tags:
                if tag not in versions:
                    self._new_version(tag)
        return [versions.get(tag) for tag in tags]

    async def bump_tags(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self._tags.pop(tag, None)
            self._new_version(tag)

    async def get_with_versions(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        versions = self._tags
        return self.get_nowait(key), [versions.get(tag) for tag in tags]

    def _new_version(self, tag: str) -> None:
        versions = self._tags
        if len(versions) >= self.max_entries:
            versions.pop(next(iter(versions)))
        versions[tag] = new_tag_version()

    # -- fences (SupportsFence): atomic, since nothing here awaits -------------------

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        entry = self._live(key)
        if entry is not None:
            return entry[0]
        self.set_nowait(key, marker, ttl)
        return None

    async def fill(
        self, key: str, expected: bytes, value: bytes | None, ttl: float | None, *, whole: bool
    ) -> bool:
        entry = self._live(key)
        if entry is None:
            return False
        current = entry[0]
        if current != expected if whole else not current.startswith(expected):
            return False
        if value is None:
            self._remove(key, entry)
        else:
            self.set_nowait(key, value, ttl)
        return True

    async def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        if entry is None:
            return None
        expires_at = entry[1]
        return math.inf if expires_at is None else expires_at - self._clock()

    # -- writes ----------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.set_nowait(key, value, ttl)

    def set_nowait(self, key: str, value: bytes, ttl: float | None) -> None:
        """`set()` without the coroutine: the store never has to wait."""
        # `_store`, `_sweep` and `_evict` inlined for the common case: this is the
        # memory tier's write path, and each call costs about a tenth of it.
        limit = self.max_bytes
        if limit is not None:
            self._check_size(key, value)
        data = self._data
        now = self._clock()
        old = data.get(key)
        if old is not None:
            self._bytes -= len(key) + len(old[0])
            data.move_to_end(key)
        if ttl is None:
            data[key] = (value, None)
        else:
            expires_at = now + ttl
            data[key] = (value, expires_at)
            tick = int(expires_at // _TICK)
            old_at = None if old is None else old[1]
            # A rewrite within the same tick is already in that tick's bucket.
            if old_at is None or int(old_at // _TICK) != tick:
                bucket = self._buckets.get(tick)
                if bucket is None:
                    self._buckets[tick] = [key]
                    heapq.heappush(self._ticks, tick)
                else:
                    bucket.append(key)
                self._bucketed += 1
                if self._bucketed > 2 * len(data) + 64:
                    self._rebuild_expiry()
        self._bytes += len(key) + len(value)
        ticks = self._ticks
        if ticks and ticks[0] < int(now // _TICK):
            self._sweep(_SWEEP_PER_WRITE)
        if len(data) > self.max_entries or (limit is not None and self._bytes > limit):
            self._evict()

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, value, _ in items:
            self._check_size(key, value)
        for key, value, ttl in items:
            self._store(key, value, ttl)
        self._sweep(_SWEEP_PER_WRITE + len(items))
        self._evict()

    async def delete(self, key: str) -> bool:
        return self._delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return sum(self._delete(key) for key in keys)

    async def delete_pattern(self, pattern: str) -> int:
        matches = compile_glob(pattern)
        doomed = [key for key in self._data if matches(key)]
        return sum(self._delete(key) for key in doomed)

    async def clear(self) -> int:
        now = self._clock()
        live = sum(1 for _, exp in self._data.values() if exp is None or exp > now)
        self._data.clear()
        self._tags.clear()
        self._buckets.clear()
        self._ticks.clear()
        self._bucketed = 0
        self._bytes = 0
        return live

    # -- scanning --------------------------------------------------------------------

    async def scan(self, pattern: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        # The cursor is the scan-order value of the last key returned: a stable hash,
        # so LRU reordering and writes never skip a key present for the whole scan.
        matches = compile_glob(pattern)
        now = self._clock()
        mask = _HASH_MASK
        found = heapq.nsmallest(
            count + 1,
            (
                (order, key)
                for key, (_, expires_at) in self._data.items()
                if (order := (hash(key) & mask) + 1) > cursor
                and (expires_at is None or expires_at > now)
                and matches(key)
            ),
        )
        if len(found) <= count:
            return 0, [key for _, key in found]
        page = found[:count]
        last = page[-1][0]
        if found[count][0] == last:  # hash twins across the cut: the page takes them all
            twins = [
                key
                for key, (_, expires_at) in self._data.items()
                if (hash(key) & mask) + 1 == last
                and (expires_at is None or expires_at > now)
                and matches(key)
            ]
            page = [item for item in page if item[0] != last] + [(last, k) for k in twins]
        return last, [key for _, key in page]

    async def stats(self) -> BackendStats:
        return self.stats_nowait()

    def stats_nowait(self) -> BackendStats:
        self._sweep(self._bucketed, exact=True)
        return BackendStats(
            name=self.name,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=self._expirations,
            entries=len(self._data),
            bytes=self._bytes,
            details={"max_entries": self.max_entries, "max_bytes": self.max_bytes},
        )

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        await self.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"MemoryBackend(max_entries={self.max_entries}, max_bytes={self.max_bytes})"

    # -- internals -------------------------------------------------------------------

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at = entry[1]
        if expires_at is not None and expires_at <= self._clock():
            self._remove(key, entry)
            self._expirations += 1
            return None
        return entry

    def _check_size(self, key: str, value: bytes) -> None:
        if self.max_bytes is not None and len(key) + len(value) > self.max_bytes:
            raise ValueTooLargeError(
                f"entry of {len(key) + len(value)} bytes exceeds max_bytes={self.max_bytes}"
            )

    def _store(self, key: str, value: bytes, ttl: float | None) -> None:
        expires_at = None if ttl is None else self._clock() + ttl
        old = self._data.get(key)
        if old is not None:
            self._bytes -= len(key) + len(old[0])
            self._data.move_to_end(key)
        self._data[key] = (value, expires_at)
        self._bytes += len(key) + len(value)
        if expires_at is not None:
            tick = int(expires_at // _TICK)
            bucket = self._buckets.get(tick)
            if bucket is None:
                self._buckets[tick] = [key]
                heapq.heappush(self._ticks, tick)
            else:
                bucket.append(key)
            self._bucketed += 1
            if self._bucketed > 2 * len(self._data) + 64:
                self._rebuild_expiry()

    def _delete(self, key: str) -> bool:
        entry = self._live(key)
        if entry is None:
            return False
        self._remove(key, entry)
        return True

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._data[key]
        self._bytes -= len(key) + len(entry[0])

    def _sweep(self, budget: int, *, exact: bool = False) -> None:
        """Reclaim up to ``budget`` expired entries, from buckets whose tick has passed.

        ``exact`` also goes through the bucket of the current tick, so that no expired
        entry is left (statistics count what is live).
        """
        ticks = self._ticks
        if not ticks:
            return
        now = self._clock()
        done_before = int(now // _TICK)  # every key in an earlier tick has expired
        buckets = self._buckets
        data = self._data
        while budget > 0 and ticks and (ticks[0] < done_before or exact):
            tick = ticks[0]
            if tick > done_before:
                return
            bucket = buckets[tick]
            keep = []
            while bucket and budget > 0:
                key = bucket.pop()
                budget -= 1
                self._bucketed -= 1
                entry = data.get(key)
                # A bucket slot outlives overwrites and deletes: the entry's own
                # expiry decides.
                if entry is None or entry[1] is None or int(entry[1] // _TICK) != tick:
                    continue
                if entry[1] <= now:
                    self._remove(key, entry)
                    self._expirations += 1
                else:
                    keep.append(key)  # the current tick, not over yet
            if keep:
                bucket.extend(keep)
                self._bucketed += len(keep)
                return
            if bucket:
                return  # budget spent
            del buckets[tick]
            heapq.heappop(ticks)

    def _rebuild_expiry(self) -> None:
        self._buckets = {}
        self._bucketed = 0
        for key, (_, expires_at) in self._data.items():
            if expires_at is not None:
                self._buckets.setdefault(int(expires_at // _TICK), []).append(key)
                self._bucketed += 1
        self._ticks = list(self._buckets)
        heapq.heapify(self._ticks)

    def _evict(self) -> None:
        data = self._data
        limit = self.max_bytes
        while len(data) > self.max_entries or (limit is not None and self._bytes > limit):
            key, entry = data.popitem(last=False)
            self._bytes -= len(key) + len(entry[0])
            self._evictions += 1


def _event_id(text: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a pair; ``"0"``, ``"0-0"`` and ``"$"``-less forms as Redis reads them."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
