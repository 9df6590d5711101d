"""In-process storage: least-recently-used eviction and per-entry expiry."""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from .._glob import compile_glob
from ..exceptions import ConfigurationError, ValueTooLargeError
from .base import Backend, BackendStats, SupportsNowait, SupportsStatsNowait

__all__ = ["MemoryBackend"]

# An entry is (value, expires_at or None, sequence number). Tuples, not objects: they
# are cheaper to build and to read on the hit path.
_Entry = tuple[bytes, "float | None", int]

# Expired entries reclaimed per write, at most: more than one, so the expiry heap drains
# faster than writes fill it, yet bounded, so one write never pays for a mass expiry.
_SWEEP_PER_WRITE = 32


class MemoryBackend(Backend, SupportsNowait, SupportsStatsNowait):
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
        self._expiry: list[tuple[float, int, str]] = []  # heap of (expires_at, seq, key)
        self._seq = 0
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0

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
        self._check_size(key, value)
        self._store(key, value, ttl)
        self._sweep(_SWEEP_PER_WRITE)
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
        live = sum(1 for _, exp, _ in self._data.values() if exp is None or exp > now)
        self._data.clear()
        self._expiry.clear()
        self._bytes = 0
        return live

    # -- scanning --------------------------------------------------------------------

    async def scan(self, pattern: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        # The cursor is the sequence number of the last key returned. Sequence numbers
        # follow writes, not reads, so LRU reordering never skips a key between pages.
        matches = compile_glob(pattern)
        now = self._clock()
        found = heapq.nsmallest(
            count + 1,
            (
                (seq, key)
                for key, (_, expires_at, seq) in self._data.items()
                if seq > cursor and (expires_at is None or expires_at > now) and matches(key)
            ),
        )
        if len(found) <= count:
            return 0, [key for _, key in found]
        page = found[:count]
        return page[-1][0], [key for _, key in page]

    # -- housekeeping ----------------------------------------------------------------

    async def stats(self) -> BackendStats:
        return self.stats_nowait()

    def stats_nowait(self) -> BackendStats:
        self._sweep(len(self._expiry))
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
        self._seq += 1
        seq = self._seq
        expires_at = None if ttl is None else self._clock() + ttl
        old = self._data.get(key)
        if old is not None:
            self._bytes -= len(key) + len(old[0])
            self._data.move_to_end(key)
        self._data[key] = (value, expires_at, seq)
        self._bytes += len(key) + len(value)
        if expires_at is not None:
            heapq.heappush(self._expiry, (expires_at, seq, key))
            if len(self._expiry) > 2 * len(self._data) + 64:
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

    def _sweep(self, budget: int) -> None:
        heap = self._expiry
        if not heap:
            return
        now = self._clock()
        data = self._data
        while budget > 0 and heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            budget -= 1
            entry = data.get(key)
            # A heap item outlives overwrites and deletes; only act if it is current.
            if entry is not None and entry[2] == seq:
                self._remove(key, entry)
                self._expirations += 1

    def _rebuild_expiry(self) -> None:
        self._expiry = [
            (expires_at, seq, key)
            for key, (_, expires_at, seq) in self._data.items()
            if expires_at is not None
        ]
        heapq.heapify(self._expiry)

    def _evict(self) -> None:
        data = self._data
        limit = self.max_bytes
        while len(data) > self.max_entries or (limit is not None and self._bytes > limit):
            key, entry = data.popitem(last=False)
            self._bytes -= len(key) + len(entry[0])
            self._evictions += 1
