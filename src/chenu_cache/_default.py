"""The default instance, ``cache_service``, and the ``cache`` decorator bound to it.

Built at import without I/O and without reading the environment: ``cache_service`` is a
memory cache until ``await cache_service.initialize()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from typing_extensions import ParamSpec

from ._decorator import CachedFunction, KeyBuilder, bind_decorator
from ._facade import FallbackCache
from ._types import TTL

__all__ = ["cache", "cache_service"]

P = ParamSpec("P")
R = TypeVar("R")

cache_service = FallbackCache()
"""The process-wide default cache: memory-only until ``initialize()`` connects it."""


@overload
def cache(ttl: Callable[P, Awaitable[R]], /) -> CachedFunction[P, R]: ...


@overload
def cache(
    ttl: TTL = None,
    *,
    namespace: str | None = None,
    key_builder: KeyBuilder | None = None,
    refresh_after: float | timedelta | None = None,
    stale_if_error: float | timedelta | None = None,
    early_refresh: float | None = None,
    lock: bool | float = False,
    cache: FallbackCache | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]: ...


def cache(
    ttl: Any = None,
    *,
    namespace: str | None = None,
    key_builder: KeyBuilder | None = None,
    refresh_after: float | timedelta | None = None,
    stale_if_error: float | timedelta | None = None,
    early_refresh: float | None = None,
    lock: bool | float = False,
    cache: FallbackCache | None = None,
) -> Any:
    """Cache a coroutine function's results: ``@cache(ttl=300, namespace="user")``.

    - ``ttl``: seconds, ``timedelta`` or ``NO_EXPIRY``; default: the namespace's TTL.
    - ``namespace``: the namespace entries live in (it also picks the TTL).
    - ``key_builder``: called with the function's own arguments, returns the key;
      default: the function's import path and its arguments as canonical JSON.
    - ``refresh_after``, ``stale_if_error``, ``early_refresh``, ``lock``: the freshness
      options of `FallbackCache.get_or_set()`, same names and meaning.
    - ``cache``: the `FallbackCache` to use; default ``cache_service``.

    The decorated function keeps its signature, gains ``await f.invalidate(...)``
    (same arguments as the call) and ``f.key(...)``. Decorating a function that is not
    ``async def`` raises ``TypeError`` at once. Also usable bare: ``@cache``.
    """
    target = cache
    return bind_decorator(
        (lambda: cache_service) if target is None else (lambda: target),
        ttl,
        namespace=namespace,
        key_builder=key_builder,
        refresh_after=refresh_after,
        stale_if_error=stale_if_error,
        early_refresh=early_refresh,
        lock=lock,
    )
