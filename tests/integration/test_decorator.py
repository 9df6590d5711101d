"""The @cache decorator: keys, signatures, methods, invalidation, binding."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import pytest

import chenu_cache
from chenu_cache import CachedFunction, CacheTypeError, FallbackCache, cache, cache_service


async def test_caches_and_invalidates_with_the_call_arguments(any_cache: FallbackCache) -> None:
    calls: list[tuple[str, bool]] = []

    @any_cache.cached(ttl=300, namespace="user")
    async def get_user(user_id: str, verbose: bool = False) -> dict[str, Any]:
        calls.append((user_id, verbose))
        return {"id": user_id, "verbose": verbose}

    assert await get_user("u1") == {"id": "u1", "verbose": False}
    assert await get_user("u1") == {"id": "u1", "verbose": False}
    assert await get_user(user_id="u1") == {"id": "u1", "verbose": False}
    assert await get_user("u1", False) == {"id": "u1", "verbose": False}
    assert calls == [("u1", False)]
    assert await get_user("u1", verbose=True) == {"id": "u1", "verbose": True}
    assert len(calls) == 2
    assert await get_user.invalidate(user_id="u1") is True
    assert await get_user.invalidate("u1") is False
    await get_user("u1")
    assert len(calls) == 3
    key = get_user.key("u1")
    assert await any_cache.get(key, namespace="user") == {"id": "u1", "verbose": False}
    ttl = await any_cache.ttl(key, namespace="user")
    assert ttl is not None
    assert 290 < ttl <= 300


def test_decorating_a_plain_function_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="coroutine"):

        @cache(ttl=10)
        def sync(x: int) -> int:
            return x

    with pytest.raises(TypeError):
        cache(lambda: 1)  # bare use on a non-coroutine


def test_bad_options_fail_at_decoration_time() -> None:
    with pytest.raises(ValueError, match="ttl"):
        cache(ttl=-1)
    with pytest.raises(ValueError, match="namespace"):
        cache(namespace="Bad NS")


def test_signature_and_metadata_are_preserved() -> None:
    @cache(ttl=10)
    async def documented(a: int, b: str = "x", *, c: float = 1.0) -> list[int]:
        """Docstring survives."""
        return [a]

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docstring survives."
    assert str(inspect.signature(documented)) == str(inspect.signature(documented.__wrapped__))
    assert list(inspect.signature(documented).parameters) == ["a", "b", "c"]
    assert inspect.iscoroutinefunction(documented.__call__)
    assert asyncio.iscoroutinefunction(documented)
    assert isinstance(documented, CachedFunction)


async def test_bare_decorator_binds_to_cache_service() -> None:
    calls = 0

    @cache
    async def compute(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * 2

    try:
        assert await compute(21) == 42
        assert await compute(21) == 42
        assert calls == 1
        assert await cache_service.get(compute.key(21)) == 42
    finally:
        await compute.invalidate(21)


async def test_cache_keyword_binds_another_instance() -> None:
    other = FallbackCache(read_env=False)

    @cache(ttl=60, cache=other)
    async def f(x: int) -> int:
        return x

    await f(1)
    assert await other.get(f.key(1)) == 1
    assert await cache_service.get(f.key(1)) is None


async def test_key_builder_receives_the_call_arguments(any_cache: FallbackCache) -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def builder(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return f"profile:{args[0] if args else kwargs['user_id']}"

    @any_cache.cached(key_builder=builder)
    async def get_user_profile(user_id: str, include_stats: bool = False) -> str:
        return user_id

    await get_user_profile("7", include_stats=True)
    assert seen[0] == (("7",), {"include_stats": True})
    assert await any_cache.get("profile:7") == "7"
    assert await get_user_profile.invalidate(user_id="7") is True


async def test_key_builder_must_return_a_string(any_cache: FallbackCache) -> None:
    @any_cache.cached(key_builder=lambda x: x)
    async def f(x: Any) -> Any:
        return x

    with pytest.raises(CacheTypeError):
        await f(1)


class Service:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    @cache_service.cached(namespace="user")
    async def lookup(self, user_id: str) -> str:
        self.calls += 1
        return f"{user_id}@{self.name}"

    @cache_service.cached(key_builder=lambda self, user_id: f"svc:{self.name}:{user_id}")
    async def per_instance(self, user_id: str) -> str:
        self.calls += 1
        return f"{user_id}@{self.name}"


async def test_methods_leave_self_out_of_the_key_and_invalidate_from_the_instance() -> None:
    a, b = Service("a"), Service("b")
    try:
        assert await a.lookup("1") == "1@a"
        assert await b.lookup("1") == "1@a"  # shared entry: self is not in the default key
        assert b.calls == 0
        assert a.lookup.key("1") == b.lookup.key("1") == Service.lookup.key(a, "1")
        assert await b.lookup.invalidate("1") is True
        assert await b.lookup("1") == "1@b"
        assert await a.per_instance("1") == "1@a"
        assert await b.per_instance("1") == "1@b"
        assert await a.per_instance.invalidate("1") is True
    finally:
        await cache_service.clear()


def _key_in_subprocess(code: str) -> str:
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, {path!r})
        from chenu_cache import cache
        {code}
        print(f.key(*ARGS))
        """
    ).format(path=str(__import__("pathlib").Path(__file__).resolve().parents[2]), code=code)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "random", "PATH": ""},
    )
    return out.stdout.strip()


def test_default_keys_are_stable_across_processes() -> None:
    code = textwrap.dedent(
        """
        from datetime import date
        from uuid import UUID
        @cache
        async def f(a, b=None, *rest, **extra):
            return a
        ARGS = ("x", {"s": {3, 1, 2}, "d": date(2026, 1, 2)}, UUID(int=5), frozenset("ab"))
        """
    )
    keys = {_key_in_subprocess(code) for _ in range(3)}
    assert len(keys) == 1
    (key,) = keys
    assert "0x" not in key  # no memory addresses
    assert "<object" not in key


def test_long_and_spaced_arguments_become_a_digest() -> None:
    @cache
    async def f(text: str) -> str:
        return text

    long_key = f.key("y" * 1000)
    assert len(long_key) < 200
    assert "sha256:" in long_key
    assert " " not in f.key("has spaces in it")
    assert f.key("a") != f.key("b")
    assert f.key(1) != f.key("1")


def test_unsupported_argument_types_are_refused_with_a_hint() -> None:
    @cache
    async def f(x: object) -> object:
        return x

    with pytest.raises(CacheTypeError, match="key_builder"):
        f.key(object())


def test_supported_argument_types_make_distinct_keys() -> None:
    @dataclass
    class Point:
        x: int
        y: int

    class Tagged:
        def __cache_key__(self) -> str:
            return "tagged-1"

    @cache
    async def f(x: object) -> object:
        return x

    values: list[object] = [
        Point(1, 2),
        Point(2, 1),
        Tagged(),
        date(2026, 1, 1),
        UUID(int=1),
        b"\x00",
        {1, 2},
        (1, 2),
        None,
    ]
    keys = [f.key(v) for v in values]
    assert len(set(keys)) == len(keys)


def test_public_decorator_lives_at_the_package_root() -> None:
    assert chenu_cache.cache is cache


class WithClassAndStatic:
    calls = 0

    @cache
    @classmethod
    async def by_class(cls, x: int) -> str:
        cls.calls += 1
        return f"{cls.__name__}:{x}"

    @cache
    @staticmethod
    async def by_static(x: int) -> int:
        WithClassAndStatic.calls += 1
        return x * 3


async def test_classmethod_and_staticmethod_under_cache() -> None:
    try:
        assert await WithClassAndStatic.by_class(1) == "WithClassAndStatic:1"
        assert await WithClassAndStatic().by_class(1) == "WithClassAndStatic:1"
        assert await WithClassAndStatic.by_static(2) == 6
        assert await WithClassAndStatic().by_static(2) == 6
        assert WithClassAndStatic.calls == 2
        assert WithClassAndStatic.by_class.key(1).endswith(":[1]")  # cls is not in the key
        assert await WithClassAndStatic.by_class.invalidate(1) is True
        assert await WithClassAndStatic().by_static.invalidate(2) is True
    finally:
        await cache_service.clear()
