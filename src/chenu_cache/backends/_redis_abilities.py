"""What RedisBackend can do besides the `Backend` protocol: locks, fences, tag versions,
the event stream.

Each is an optional ability the facade checks for (`SupportsLock`, `SupportsFence`,
`SupportsTags`); all of them run through the backend's per-loop state and its one
command boundary, and touch keys under the backend's prefix only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .base import SupportsEvents, SupportsFence, SupportsLock, SupportsTags, new_tag_version

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster

    from ._redis_loops import LoopStates

__all__ = ["TAG_VERSION_TTL", "Abilities", "px"]

TAG_VERSION_TTL = 30 * 24 * 3600.0
"""Seconds a tag version lives after it was made; a lost one makes its entries stale."""


def px(ttl: float) -> int:
    # Round up: an entry must never expire before the TTL the caller asked for.
    return max(1, math.ceil(ttl * 1000))


class Abilities(SupportsEvents, SupportsFence, SupportsLock, SupportsTags):
    """Mixed into `RedisBackend`, which provides the attributes declared here."""

    prefix: str
    _loops: LoopStates
    _lock_prefix: str
    _tag_prefix: str
    operation_timeout: float
    _hits: int
    _misses: int

    if TYPE_CHECKING:

        async def delete_many(self, keys: Sequence[str]) -> int: ...

    # -- locks (SupportsLock) --------------------------------------------------------

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        state = self._loops.here()
        async with state.command:
            taken = await state.client.set(self._lock_prefix + key, token, nx=True, px=px(ttl))
        return bool(taken)

    async def release_lock(self, key: str, token: str) -> bool:
        state = self._loops.here()
        async with state.command:
            released = await state.release_lock(keys=[self._lock_prefix + key], args=[token])
        return bool(released)

    # -- tags (SupportsTags) -----------------------------------------------------------

    async def tag_versions(self, tags: Sequence[str], *, create: bool) -> list[bytes | None]:
        physical = [self._tag_prefix + tag for tag in tags]
        state = self._loops.here()
        async with state.command:
            if not create:
                if state.cluster:  # tags spread over slots
                    found = await cast("RedisCluster", state.client).mget_nonatomic(physical)
                else:
                    found = await state.client.mget(physical)
                return cast("list[bytes | None]", found)
            pipe = state.client.pipeline(transaction=False)
            for key in physical:
                pipe.set(key, new_tag_version(), nx=True, px=px(TAG_VERSION_TTL))
            for key in physical:
                pipe.get(key)
            replies = await pipe.execute()
        return cast("list[bytes | None]", replies[len(physical) :])

    async def get_with_versions(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        state = self._loops.here()
        if state.cluster:  # the tags' keys live in other slots: two round trips
            async with state.command:
                data = cast("bytes | None", await state.client.get(self.prefix + key))
            versions = await self.tag_versions(tags, create=False)
        else:
            physical = [self.prefix + key, *(self._tag_prefix + tag for tag in tags)]
            async with state.command:
                found = await state.get_with_versions(keys=physical)
            data, versions = found[0] or None, [v or None for v in found[1:]]
        if data is None:
            self._misses += 1
        else:
            self._hits += 1
        return data, versions

    async def bump_tags(self, tags: Sequence[str]) -> None:
        state = self._loops.here()
        async with state.command:
            pipe = state.client.pipeline(transaction=False)
            for tag in tags:
                pipe.set(self._tag_prefix + tag, new_tag_version(), px=px(TAG_VERSION_TTL))
            await pipe.execute()

    # -- fences (SupportsFence) ------------------------------------------------------

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        state = self._loops.here()
        async with state.command:
            held = await state.claim(keys=[self.prefix + key], args=[marker, px(ttl)])
        return cast("bytes | None", held)

    async def fill(
        self, key: str, expected: bytes, value: bytes | None, ttl: float | None, *, whole: bool
    ) -> bool:
        mode, millis = ("del", 0) if value is None else ("set", 0 if ttl is None else px(ttl))
        args = [expected, "1" if whole else "0", mode, value or b"", millis]
        state = self._loops.here()
        async with state.command:
            return bool(await state.fill(keys=[self.prefix + key], args=args))

    # -- the event stream (SupportsEvents) ------------------------------------------------

    @property
    def _stream(self) -> str:
        # One key, so one Cluster slot: the slot of "<prefix>!events". clear() keeps it.
        return self.prefix + "!events"

    async def append_event(self, data: bytes, maxlen: int) -> str:
        state = self._loops.here()
        async with state.command:
            found = await state.client.xadd(
                self._stream, {"e": data}, maxlen=maxlen, approximate=True
            )
        return found.decode() if isinstance(found, bytes) else str(found)

    async def delete_publishing(self, keys: Sequence[str], data: bytes, maxlen: int) -> int:
        # One round trip: UNLINK then XADD, pipelined, so a reader that hears of the event
        # finds the keys gone. A Cluster spreads the keys over slots (and the stream
        # lives in one): two steps there.
        state = self._loops.here()
        if state.cluster:
            removed = await self.delete_many(keys)
            await self.append_event(data, maxlen)
            return removed
        async with state.command:
            pipe = state.client.pipeline(transaction=False)
            pipe.unlink(*[self.prefix + k for k in keys])
            pipe.xadd(self._stream, {"e": data}, maxlen=maxlen, approximate=True)
            removed, _ = await pipe.execute()
        return int(removed)

    async def read_events(self, after: str, count: int, block: float) -> list[tuple[str, bytes]]:
        # A blocking read counts against the socket timeout: a fifth of the operation
        # timeout at most, so a quiet stream on a loaded machine never looks like an
        # outage (an event still returns the read at once).
        # block <= 0 is a plain read: XREAD's BLOCK 0 would wait for ever.
        state = self._loops.here()
        if block > 0:
            wait = max(1, int(min(block, self.operation_timeout / 5) * 1000))
            async with state.event_reads, state.command:
                replies: Any = await state.client.xread(
                    {self._stream: after}, count=count, block=wait
                )
        else:
            async with state.command:
                replies = await state.client.xread({self._stream: after}, count=count)
        found: list[tuple[str, bytes]] = []
        streams = replies.items() if isinstance(replies, dict) else replies or ()  # RESP3/2
        for _, entries in streams:
            for event_id, fields in entries:
                text = event_id.decode() if isinstance(event_id, bytes) else str(event_id)
                data = fields.get(b"e", fields.get("e", b""))
                found.append((text, data if isinstance(data, bytes) else str(data).encode()))
        return found

    async def event_bounds(self) -> tuple[str, str] | None:
        state = self._loops.here()
        async with state.command:
            first = await state.client.xrange(self._stream, "-", "+", count=1)
            last = await state.client.xrevrange(self._stream, "+", "-", count=1)
        if not first or not last:
            return None
        ids = [entry[0] for entry in (first[0], last[0])]
        low, high = (i.decode() if isinstance(i, bytes) else str(i) for i in ids)
        return low, high
