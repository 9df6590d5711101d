"""The read side of `FallbackCache`: ``get``, ``get_nowait``, ``get_many``, and the
queries that change nothing (``ttl``, ``exists``, ``scan``).

A read asks the current route for bytes and the decoder for a value: the memory tier
answers without an await (``route.nowait``), a tagged entry has its tags' versions
checked (an await), and whatever cannot be read now is a miss, counted once.
`FallbackCache` mixes it in and provides the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, overload

from ._keys import Resolved, validate_scan
from ._routes import Route
from ._types import MISSING
from ._value_types import ValueType, value_type
from ._values import ABSENT, TAGGED, Decoder
from .exceptions import CommandRefusedError

__all__ = ["Reads"]

T = TypeVar("T")
D = TypeVar("D")


class Reads:
    """Reads of a cache; `FallbackCache` provides the attributes declared here."""

    _route: Route
    _decoder: Decoder
    _resolve: Callable[[object, str | None], Resolved]
    _memo: Mapping[object, Resolved]
    max_key_length: int

    # -- reading and decoding -----------------------------------------------------

    async def _read(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` through the current route; a refused read misses."""
        try:
            return await self._route.read(key)
        except CommandRefusedError as exc:
            self._decoder.refused(key, exc)
            return None

    def _key(self, key: str, namespace: str | None) -> str:
        return self._resolve(key, namespace)[0]

    # -- reads -----------------------------------------------------------------------

    @overload
    async def get(self, key: str, namespace: str | None = None, *, type: type[T]) -> T | None: ...
    @overload
    async def get(
        self, key: str, namespace: str | None = None, *, default: D, type: type[T]
    ) -> T | D: ...
    @overload
    async def get(
        self, key: str, namespace: str | None = None, default: Any = None, *, type: Any = None
    ) -> Any: ...

    async def get(
        self, key: str, namespace: str | None = None, default: Any = None, *, type: Any = None
    ) -> Any:
        """The cached value, or ``default`` on a miss.

        ``type=`` builds the stored JSON back into that type (a pydantic model, a
        dataclass, ``datetime``, ``tuple[int, str]``, ...; SPEC §11); data that does not
        fit it is a miss. A cached ``None`` is returned as ``None``; to tell it from a
        miss, pass ``default=MISSING`` and compare with ``is MISSING``. Every call
        returns a fresh copy: mutating it never changes the cache.
        """
        full, _, slot = self._resolve(key, namespace)
        kind = None if type is None else value_type(type)
        route = self._route
        nowait = route.nowait
        if nowait is None:
            data = await self._read(full)
        else:
            data = nowait(full)
            if data is None and not route.nowait_complete:  # not near: ask Redis
                data = await self._read(full)
        if data is not None:
            value = self._decoder.value(full, data, None, kind)
            if value is TAGGED:
                versions = self._route.versions_nowait if nowait is not None else None
                value = self._decoder.checked_now(full, data, kind, versions, last=True)
                if value is TAGGED:
                    value = await self._decoder.checked(full, data, kind)
            if value is not ABSENT:
                slot[0] += 1
                return value
        slot[1] += 1
        return default

    def get_nowait(
        self,
        key: str,
        namespace: str | None = None,
        default: Any = MISSING,
        *,
        refresh_after: float | timedelta | None = None,
        type: Any = None,
    ) -> Any:
        """The cached value if process memory serves it right now, else ``default``.

        Process memory is the memory tier (memory-only, or during an outage) or, while
        Redis serves, the near cache (``near_cache=``). Never waits and never does I/O:
        while Redis serves without a near cache, or on a miss, or for an entry stored
        compressed, expired, or due for a refresh after ``refresh_after`` seconds (the
        `get_or_set` option), it returns ``default`` and the caller should ``await
        get_or_set(...)``. The decorator's hit path uses it.
        """
        get_nowait = self._route.nowait
        if get_nowait is None:
            return default
        entry = None
        if key.__class__ is str:  # (``type`` is the parameter here)
            if namespace is None:
                entry = self._memo.get(key)
            elif namespace.__class__ is str:
                entry = self._memo.get((namespace, key))
        full, _, slot = entry if entry is not None else self._resolve(key, namespace)
        data = get_nowait(full)
        if data is None:
            return default
        if type is not None and type.__class__ is not ValueType:
            type = value_type(type)
        value = self._decoder.value(full, data, refresh_after, type, True)
        if value is TAGGED:
            value = self._decoder.checked_now(full, data, type, self._route.versions_nowait)
        if value is ABSENT or value is TAGGED:  # TAGGED: its tags need an awaiting read
            return default
        slot[0] += 1
        return value

    @overload
    async def get_many(
        self, keys: Iterable[str], namespace: str | None = None, *, type: type[T]
    ) -> dict[str, T]: ...
    @overload
    async def get_many(
        self, keys: Iterable[str], namespace: str | None = None, *, type: Any = None
    ) -> dict[str, Any]: ...

    async def get_many(
        self, keys: Iterable[str], namespace: str | None = None, *, type: Any = None
    ) -> dict[str, Any]:
        """The cached values of ``keys`` that are present, in one round trip.

        Missing keys are absent from the result (a cached ``None`` is present); with
        ``type=``, so are entries that do not fit it.
        """
        kind = None if type is None else value_type(type)
        requested = list(keys)
        resolved = [self._resolve(k, namespace) for k in requested]
        full = [logical for logical, _, _ in resolved]
        try:
            found = await self._route.read_many(full)
        except CommandRefusedError as exc:
            self._decoder.refused(full[0] if len(full) == 1 else f"{len(full)} keys", exc)
            found = [None] * len(full)
        result: dict[str, Any] = {}
        for key, (logical, _, slot), data in zip(requested, resolved, found, strict=True):
            if data is not None:
                value = self._decoder.value(logical, data, None, kind)
                if value is TAGGED:
                    value = await self._decoder.checked(logical, data, kind)
                if value is not ABSENT:
                    result[key] = value
                    slot[0] += 1
                    continue
            slot[1] += 1
        return result

    async def ttl(self, key: str, namespace: str | None = None) -> float | None:
        """Remaining seconds to live; ``math.inf`` without expiry; ``None`` when missing."""
        full = self._key(key, namespace)
        return await self._route.query(lambda b: b.ttl(full))

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
        validate_scan(pattern, cursor, count, max_length=self.max_key_length)
        return await self._route.query(lambda b: b.scan(pattern, cursor, count))
