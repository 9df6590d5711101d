"""The default instance, ``cache_service``, and the ``cache`` decorator bound to it.

Built at import without I/O and without reading the environment: ``cache_service`` is a
memory cache until ``await cache_service.initialize()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from typing_extensions import ParamSpec, Unpack

from ._decorator import CachedFunction, DecoratorOptions, bind_decorator
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
    ttl: TTL = None, *, cache: FallbackCache | None = None, **options: Unpack[DecoratorOptions]
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]: ...


def cache(ttl: Any = None, *, cache: FallbackCache | None = None, **options: Any) -> Any:
    """Cache a coroutine function's results: ``@cache(ttl=300, namespace="user")``.

    - ``ttl``: seconds, ``timedelta`` or ``NO_EXPIRY``; default: the namespace's TTL.
    - ``namespace``: the namespace entries live in (it also picks the TTL).
    - ``key_builder``: called with the function's own arguments, returns the key;
      default: the function's import path and its arguments as canonical JSON.
    - ``type``: the type cached values are built back into (SPEC §11); default: the
      function's return annotation, resolved at the first call. ``type=typing.Any``
      keeps JSON types.
    - ``refresh_after``, ``stale_if_error``, ``early_refresh``, ``lock``, ``cache_if``:
      the load options of `FallbackCache.get_or_set()`, same names and meaning.
    - ``cache``: the `FallbackCache` to use; default ``cache_service``.

    The decorated function keeps its signature, gains ``await f.invalidate(...)``
    (same arguments as the call) and ``f.key(...)``. Decorating a function that is not
    ``async def`` raises ``TypeError`` at once; so does an unknown keyword. Also
    usable bare: ``@cache``.
    """
    target = cache
    return bind_decorator(
        (lambda: cache_service) if target is None else (lambda: target), ttl, **options
    )
