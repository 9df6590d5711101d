"""The ``@cache`` decorator: cache a coroutine function's results under stable keys."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import is_dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Concatenate, Generic, Protocol, TypedDict, TypeVar, cast, overload
from uuid import UUID

from typing_extensions import ParamSpec, Self

from ._freshness import Freshness
from ._keys import validate_namespace
from ._namespaces import to_seconds
from ._tags import TagTemplates
from ._types import MISSING, TTL
from ._value_types import ValueType, return_type, value_type
from .exceptions import CacheTypeError

__all__ = [
    "BoundCachedMethod",
    "CachedFunction",
    "DecoratorOptions",
    "KeyBuilder",
    "LoadOptions",
    "SupportsGetOrSet",
    "make_key",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")

KeyBuilder = Callable[..., str]
"""Called with the decorated function's own arguments; returns the entry's key."""

# Past this length, the argument part of a default key is replaced by a digest.
_MAX_READABLE_ARGS = 160
_MAX_MEMO = 4096  # remembered argument tuples per function; cleared when full


def _mark_coroutine_function(obj: object) -> None:
    """Make ``inspect`` and ``asyncio`` see a coroutine function, as frameworks check."""
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(obj)
    else:  # pragma: no cover - Python 3.10 and 3.11
        obj._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


class LoadOptions(TypedDict, total=False):
    """The options of a load, the same on ``get_or_set`` and the decorator (SPEC §6, §11)."""

    refresh_after: float | timedelta | None
    stale_if_error: float | timedelta | None
    early_refresh: float | None
    lock: bool | float
    cache_if: Callable[[Any], object] | None
    tags: Iterable[str]


class DecoratorOptions(LoadOptions, total=False):
    """What ``@cache(...)`` and ``FallbackCache.cached(...)`` take besides ``ttl``."""

    namespace: str | None
    key_builder: KeyBuilder | None
    type: Any


class SupportsGetOrSet(Protocol):
    """What the decorator needs from a cache (``FallbackCache`` provides it): its
    ``get_or_set``, ``get_nowait`` and ``invalidate``, called with their keywords."""

    @property
    def get_or_set(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def get_nowait(self) -> Callable[..., Any]: ...

    @property
    def invalidate(self) -> Callable[..., Awaitable[bool]]: ...


_PLAIN = (str, int, float, bool, type(None))
_EXACT_TAGS: dict[type, str] = {
    tuple: "@tuple",
    set: "@set",
    frozenset: "@frozenset",
    datetime: "@datetime",
    date: "@date",
    time: "@time",
    timedelta: "@timedelta",
    UUID: "@uuid",
    Decimal: "@decimal",
    bytes: "@bytes",
    bytearray: "@bytearray",
}


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _sort_key(item: object) -> str:
    return _ENCODER.encode(item)


def _tree(value: object) -> object:
    """The argument as JSON data in which no two different arguments look alike.

    JSON alone is not injective: ``{1: "a"}`` and ``{"1": "a"}`` both write
    ``{"1":"a"}``, a tuple and a list both write an array, and an ``IntEnum`` writes as
    its int. So every value JSON cannot tell apart is written as a one-key object whose
    key starts with ``@`` (``{"@tuple": [1, 2]}``), and a user's own ``str`` dict key
    that starts with ``@`` gets a second one, so it never reads as such a tag. Plain
    str/int/float/bool/None, lists and str-keyed dicts stay as they are: readable.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [_tree(v) for v in cast("list[object]", value)]
    if kind is dict:
        items = cast("dict[Any, object]", value)
        if all(type(k) is str for k in items):
            return {("@" + k if k[:1] == "@" else k): _tree(v) for k, v in items.items()}
        pairs = [[_tree(k), _tree(v)] for k, v in items.items()]
        return {"@dict": sorted(pairs, key=lambda pair: _sort_key(pair[0]))}
    hook = getattr(value, "__cache_key__", None)
    if callable(hook):
        return {"@key:" + _qualified(kind): str(hook())}
    if isinstance(value, Enum):
        return {"@enum:" + _qualified(kind): _tree(value.value)}
    tag = _EXACT_TAGS.get(kind)
    if tag is not None:
        return {tag: _scalar(value)}
    if is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclass_fields(value)}
        return {"@dataclass:" + _qualified(kind): _tree(fields)}
    model_dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(model_dump):
        return {"@model:" + _qualified(kind): _tree(model_dump(mode="json"))}
    bases: tuple[Any, ...] = (str, int, float, list, tuple, dict, set, frozenset)
    for base in bases:
        # A subclass (a NamedTuple, a str subclass) is equal to its base's values but
        # is another argument: its type goes into the key.
        if isinstance(value, base):
            return {"@" + _qualified(kind): _tree(base(value))}
    raise CacheTypeError(
        f"cannot build a stable cache key from an argument of type "
        f"{_qualified(kind)}; give the decorator a key_builder=, or define "
        "__cache_key__() on the type"
    )


def _scalar(value: object) -> object:
    """The JSON form of a value of one of ``_EXACT_TAGS``' types."""
    if isinstance(value, (tuple, list)):
        return [_tree(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_tree(v) for v in value), key=_sort_key)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        # Exact: total_seconds() is a float and would merge neighbouring microseconds.
        return [value.days, value.seconds, value.microseconds]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)  # UUID, Decimal (str keeps the exponent: 1.0 and 1.00 differ)


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), sort_keys=True)


def make_key(func_id: str, arguments: list[object]) -> str:
    """The default key: the function's import path and its arguments as canonical JSON.

    Injective (two different argument lists never make one key; see `_tree`) and
    stable across processes and runs (no ``hash()``, no ``repr`` with addresses). Long
    or whitespace-bearing argument lists are replaced by a SHA-256 digest.
    """
    try:
        text = _ENCODER.encode(_tree(arguments))
    except (TypeError, ValueError, RecursionError) as exc:
        raise CacheTypeError(f"cannot build a stable cache key: {exc}") from exc
    if len(text) > _MAX_READABLE_ARGS or " " in text:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{func_id}:{text}"


class CachedFunction(Generic[P, R]):
    """A coroutine function whose results are cached; call it as the original.

    ``await f.invalidate(*args, **kwargs)`` drops the entry that the same call would
    read, and ``f.key(*args, **kwargs)`` tells its logical key. On methods, ``self``
    or ``cls`` (the first parameter, when it has one of those names) is left out of
    the default key, so every instance shares entries; pass ``key_builder=`` to key
    on the instance.
    """

    def __init__(
        self,
        func: Callable[P, Awaitable[R]],
        resolve_cache: Callable[[], SupportsGetOrSet],
        *,
        ttl: TTL = None,
        namespace: str | None = None,
        key_builder: KeyBuilder | None = None,
        refresh_after: float | timedelta | None = None,
        stale_if_error: float | timedelta | None = None,
        early_refresh: float | None = None,
        lock: bool | float = False,
        cache_if: Callable[[Any], object] | None = None,
        tags: Iterable[str] = (),
        type: Any = MISSING,
    ) -> None:
        # Above @classmethod / @staticmethod, unwrap and bind like they do (on 3.13+
        # classmethod no longer passes binding on to what it wraps, so only this order
        # works everywhere).
        self._binding = "instance"
        wrapped: Any = func
        if isinstance(wrapped, (classmethod, staticmethod)):
            self._binding = "class" if isinstance(wrapped, classmethod) else "static"
            func = cast("Callable[P, Awaitable[R]]", wrapped.__func__)
        if not inspect.iscoroutinefunction(func):
            raise CacheTypeError(
                f"@cache decorates coroutine functions (async def); "
                f"{getattr(func, '__qualname__', func)!r} is not one"
            )
        to_seconds(ttl)  # a bad TTL is reported at decoration time, not on first call
        if namespace is not None:
            validate_namespace(namespace)
        if key_builder is not None and not callable(key_builder):
            raise CacheTypeError("key_builder must be callable")
        if cache_if is not None and not callable(cache_if):
            raise CacheTypeError("cache_if must be callable")
        # The type values are built into: given (checked now), or the return
        # annotation's, resolved at the first call (forward references exist by then).
        self._kind: ValueType | None = None
        self._kind_known = type is not MISSING
        if self._kind_known:
            self._kind = value_type(type)
        # Validated and normalized once, here; passed on only when set, so the plain
        # hit path stays lean.
        fresh = Freshness.build(refresh_after, stale_if_error, early_refresh, lock) or Freshness()
        options = {
            "refresh_after": fresh.refresh_after,
            "stale_if_error": fresh.stale_if_error,
            "early_refresh": fresh.early_refresh,
        }
        self._options: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        if lock is not False:
            self._options["lock"] = lock
        if cache_if is not None:
            self._options["cache_if"] = cache_if
        if self._kind is not None:
            self._options["type"] = self._kind
        # A hit needs no await unless XFetch must draw its random number on the
        # loader's path; a due refresh_after sends the call there too.
        self._nowait = early_refresh is None
        self._refresh_after = fresh.refresh_after
        functools.update_wrapper(self, func)
        _mark_coroutine_function(self)
        self._func = func
        self._resolve_cache = resolve_cache
        self.ttl = ttl
        self.namespace = namespace
        self.key_builder = key_builder
        self._func_id = f"{func.__module__}.{func.__qualname__}"
        self._signature = inspect.signature(func)
        # Templates checked against the parameters now; formatted on the awaiting path
        # only (a memory hit never needs them: the entry carries its tags).
        self._tags = TagTemplates(tags, self._signature.parameters) if tags else None
        params = list(self._signature.parameters.values())
        self._skip_first = bool(params) and (
            self._binding == "class"
            or (self._binding == "instance" and params[0].name in ("self", "cls"))
        )
        # Fast path for the common case: plain positional parameters, called positionally.
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._positional_only_call = simple
        self._arity = len(params)
        self._defaults = [p.default for p in params]
        # A custom key_builder may read more than the arguments' values: never memoize it.
        self._memo: dict[tuple[Any, ...], str] | None = {} if key_builder is None else None

    def _arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[object]:
        if not kwargs and self._positional_only_call and len(args) <= self._arity:
            values = list(args)
            if len(values) < self._arity:
                tail = self._defaults[len(values) :]
                if any(d is inspect.Parameter.empty for d in tail):
                    self._signature.bind(*args)  # raises the usual TypeError
                values.extend(tail)
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = []
            for param in self._signature.parameters.values():
                value = bound.arguments[param.name]
                if param.kind is param.VAR_POSITIONAL:
                    values.extend(value)
                else:
                    values.append(value)
        return values[1:] if self._skip_first else values

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The logical key (without namespace) that this call reads and writes."""
        if self.key_builder is not None:
            built = self.key_builder(*args, **kwargs)
            if not isinstance(built, str):
                raise CacheTypeError(f"key_builder must return str, not {type(built).__name__}")
            return built
        return make_key(self._func_id, self._arguments(args, kwargs))

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = None
        memo = self._memo
        if memo is not None and not kwargs:
            # Plain str/int arguments map to the same key every time: remember it.
            # (Only those: 1, 1.0 and True are equal dict keys but different cache keys.)
            basis = args[1:] if self._skip_first else args
            if len(basis) == 1:
                kind = type(basis[0])
                plain = kind is str or kind is int
            else:
                plain = all(type(a) is str or type(a) is int for a in basis)
            if plain:
                key = memo.get(basis)
                if key is None:
                    key = self.key(*args, **kwargs)
                    if len(memo) >= _MAX_MEMO:
                        memo.clear()
                    memo[basis] = key
        if key is None:
            key = self.key(*args, **kwargs)
        cache = self._resolve_cache()
        if not self._kind_known:
            self._learn_type()
        value: R
        if self._nowait:  # a hit in process memory needs no await at all
            into = self._kind
            refresh_after = self._refresh_after
            if refresh_after is None and into is None:
                value = cache.get_nowait(key, self.namespace)
            else:
                value = cache.get_nowait(
                    key, self.namespace, refresh_after=refresh_after, type=into
                )
            if value is not MISSING:
                return value
        func = self._func
        options = self._options
        if self._tags is not None:
            options = {**options, "tags": self._tags.render(self._bound(args, kwargs))}
        value = await cache.get_or_set(
            key, lambda: func(*args, **kwargs), self.ttl, self.namespace, **options
        )
        return value

    def _bound(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name (defaults included), for the tag templates."""
        if not kwargs and self._positional_only_call and len(args) <= self._arity:
            tail = self._defaults[len(args) :]
            if all(d is not inspect.Parameter.empty for d in tail):  # else bind() says why
                return dict(zip(self._signature.parameters, (*args, *tail), strict=True))
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def _learn_type(self) -> None:
        kind = return_type(self._func)
        self._kind, self._kind_known = kind, True
        if kind is not None:
            self._options["type"] = kind

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry the same call would read; return whether it existed."""
        return await self._resolve_cache().invalidate(
            self.key(*args, **kwargs), namespace=self.namespace
        )

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R],
        instance: S,
        owner: type[Any] | None = None,
    ) -> BoundCachedMethod[P2, R]: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if self._binding == "class":
            return BoundCachedMethod(self, owner if owner is not None else type(instance))
        if instance is None or self._binding == "static":
            return self
        return BoundCachedMethod(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self._func_id}>"


class BoundCachedMethod(Generic[P, R]):
    """A cached method bound to its instance, as ``obj.method`` gives it."""

    def __init__(self, cached: CachedFunction[Any, R], instance: object) -> None:
        self._cached = cached
        self.__self__ = instance
        self.__func__ = cached
        functools.update_wrapper(self, cached._func)
        _mark_coroutine_function(self)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._cached(self.__self__, *args, **kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry this call (on this instance) would read; return whether it existed."""
        return await self._cached.invalidate(self.__self__, *args, **kwargs)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The logical key (without namespace) that this call reads and writes."""
        return self._cached.key(self.__self__, *args, **kwargs)


def decorator_factory(
    resolve_cache: Callable[[], SupportsGetOrSet], **options: Any
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Build the decorator that ``cache(...)`` and ``FallbackCache.cached(...)`` return.

    ``options`` are `CachedFunction`'s keywords, validated here, at decoration.
    """
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise CacheTypeError(f"@cache got unknown option(s): {', '.join(sorted(unknown))}")
    namespace = options.get("namespace")
    if namespace is not None:
        validate_namespace(namespace)
    to_seconds(options.get("ttl"))
    if "type" in options:
        value_type(options["type"])  # an unsupported type is reported at decoration
    Freshness.build(
        options.get("refresh_after"),
        options.get("stale_if_error"),
        options.get("early_refresh"),
        options.get("lock", False),
    )

    def decorate(func: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        return CachedFunction(func, resolve_cache, **options)

    return decorate


_OPTION_NAMES = {"ttl"} | DecoratorOptions.__optional_keys__ | DecoratorOptions.__required_keys__


def bind_decorator(
    resolve_cache: Callable[[], SupportsGetOrSet], ttl: Any = None, **options: Any
) -> Any:
    """``@cache`` and ``@cache(...)`` alike: a bare use passes the function as ``ttl``."""
    if callable(ttl) or isinstance(ttl, (classmethod, staticmethod)):
        return CachedFunction(ttl, resolve_cache)
    return decorator_factory(resolve_cache, ttl=ttl, **options)
