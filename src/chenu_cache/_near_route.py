"""The near cache's route: `Primary`, with a `NearCache` in front of its reads (SPEC §13).

A hit is answered by ``nowait`` (the near copy, no await); a read that misses goes to
Redis with its placeholder and its entry's TTL, and comes back to be kept. Every write
and change this process makes drops its local copies as soon as the primary has
acknowledged it (before the call returns; Redis's own invalidation for it comes later
and finds nothing left to drop). A failover leaves this route; `Failover` empties the
near cache at every switch, so nothing it held survives an outage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ._near import NearCache
from ._routes import Entries, Primary
from .backends.base import Backend, SupportsTracking
from .events import CacheEvent
from .exceptions import BackendError, CommandRefusedError

if TYPE_CHECKING:
    from ._failover import Failover

__all__ = ["Near"]

T = TypeVar("T")


class Near(Primary):
    """The primary serves; recently read entries are served from process memory."""

    name = "primary+near"
    nowait_complete = False  # a near miss is not a miss: Redis may hold the key

    def __init__(self, failover: Failover, primary: SupportsTracking, near: NearCache) -> None:
        backend: Backend = primary  # type: ignore[assignment]
        super().__init__(failover, backend)
        self.tracked = primary
        self.near = near
        self.nowait = near.get
        self.versions_nowait = self._versions_near
        self._tag_key = primary.tag_key

    def _versions_near(self, tags: Sequence[str]) -> list[bytes | None] | None:
        """The versions of ``tags`` if the near cache holds them all, else ``None``."""
        get = self.near.get
        tag_key = self._tag_key
        found: list[bytes | None] = []
        for tag in tags:
            version = get(tag_key(tag))
            if version is None:
                return None
            found.append(version)
        return found

    # -- reads -----------------------------------------------------------------------

    async def read(self, key: str) -> bytes | None:
        near = self.near
        data = near.get(key)
        if data is not None:
            return data
        token = near.begin(key)
        if token is None:
            return await super().read(key)
        try:
            data, ttl = await self.tracked.get_with_ttl(key)
        except CommandRefusedError:  # no scripts for this user: read as without it
            near.abandon(key, token)
            near.refused = True
            return await super().read(key)
        except BackendError as exc:
            near.abandon(key, token)
            await self.failover.failed(exc)
            return await self.failover.route.read(key)
        except BaseException:
            near.abandon(key, token)
            raise
        near.complete(key, token, data, ttl)
        return data

    async def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        near = self.near
        found = [near.get(key) for key in keys]
        wanted = [i for i, data in enumerate(found) if data is None]
        if not wanted:
            return found
        missing = [keys[i] for i in wanted]
        tokens = [near.begin(key) for key in missing]
        if all(token is None for token in tokens):
            replies = await super().read_many(missing)
            for i, data in zip(wanted, replies, strict=True):
                found[i] = data
            return found
        try:
            read = await self.tracked.get_many_with_ttl(missing)
        except BaseException as exc:
            for key, token in zip(missing, tokens, strict=True):
                if token is not None:
                    near.abandon(key, token)
            if isinstance(exc, CommandRefusedError):
                near.refused = True
                replies = await super().read_many(missing)
            elif isinstance(exc, BackendError):
                await self.failover.failed(exc)
                replies = await self.failover.route.read_many(missing)
            else:
                raise
            for i, data in zip(wanted, replies, strict=True):
                found[i] = data
            return found
        for i, key, token, (data, ttl) in zip(wanted, missing, tokens, read, strict=True):
            if token is not None:
                near.complete(key, token, data, ttl)
            found[i] = data
        return found

    async def tag_versions(self, tags: Sequence[str], create: bool) -> list[bytes | None]:
        if create:  # may write versions: this process must not hold the old ones
            try:
                return await super().tag_versions(tags, create)
            finally:
                self.near.discard([self._tag_key(tag) for tag in tags])
        return await self.read_many([self._tag_key(tag) for tag in tags])

    async def read_tagged(
        self, key: str, tags: Sequence[str]
    ) -> tuple[bytes | None, list[bytes | None]]:
        data = self.near.get(key)
        versions = self._versions_near(tags)
        if data is not None and versions is not None:
            return data, versions
        # Two round trips where the primary route takes one, but both come back to be
        # kept near: the next tagged read of this key needs none.
        return await self.read(key), await self.tag_versions(tags, False)

    # -- writes and changes: this process sees its own at once -----------------------

    async def write(self, key: str, data: bytes, ttl: float | None) -> None:
        try:
            await super().write(key, data, ttl)
        finally:
            self.near.discard((key,))

    async def write_many(self, entries: Entries) -> None:
        try:
            await super().write_many(entries)
        finally:
            self.near.discard([key for key, _, _ in entries])

    async def claim(self, key: str, marker: bytes, ttl: float) -> bytes | None:
        try:
            return await super().claim(key, marker, ttl)
        finally:
            self.near.discard((key,))

    async def fill(
        self, key: str, expected: bytes, data: bytes | None, ttl: float | None, whole: bool
    ) -> bool:
        try:
            return await super().fill(key, expected, data, ttl, whole)
        finally:
            self.near.discard((key,))

    async def change(
        self,
        call: Callable[[Backend], Awaitable[T]],
        *,
        keys: Iterable[str] = (),
        pattern: str | None = None,
        tags: Sequence[str] = (),
        everything: bool = False,
    ) -> T:
        keys = tuple(keys)
        try:
            return await super().change(
                call, keys=keys, pattern=pattern, tags=tags, everything=everything
            )
        finally:
            near = self.near
            if everything:
                near.flush()
            elif pattern is not None:
                near.discard_matching(pattern)
            else:
                near.discard(keys)
                near.discard([self._tag_key(tag) for tag in tags])

    async def delete_publishing(self, keys: Sequence[str], event: CacheEvent, maxlen: int) -> int:
        try:
            return await super().delete_publishing(keys, event, maxlen)
        finally:
            self.near.discard(keys)
