"""Values that come back as themselves (SPEC §11), on memory, Redis, Cluster and Sentinel.

Decorated coroutines learn the type from their return annotation (resolved at the
first call, so forward references work); ``get``, ``get_many`` and ``get_or_set`` take
``type=``. Stored data that no longer fits is a counted miss; ``cache_if`` decides what
is stored.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, Literal, NamedTuple, Optional
from uuid import UUID

import pytest
from pydantic import BaseModel

from chenu_cache import MISSING, FallbackCache, cache

CALLS: Counter[str] = Counter()
"""How many times each module-level loader below ran its body."""


# -- a decorated function whose return type is defined further down ----------------


class _CurrentCache:
    """Binds the module-level decorated function below to the test's ``any_cache``."""

    target: FallbackCache | None = None

    def _cache(self) -> FallbackCache:
        assert self.target is not None
        return self.target

    @property
    def get_or_set(self) -> Callable[..., Awaitable[Any]]:
        return self._cache().get_or_set

    @property
    def get_nowait(self) -> Callable[..., Any]:
        return self._cache().get_nowait

    @property
    def invalidate(self) -> Callable[..., Awaitable[bool]]:
        return self._cache().invalidate


CURRENT = _CurrentCache()


@cache(cache=CURRENT, namespace="late")  # type: ignore[arg-type]
async def load_late(n: int) -> LateModel:  # LateModel does not exist yet
    CALLS["late"] += 1
    return LateModel(n=n, when=date(2024, 1, n), amount=Decimal("2.50"))


class LateModel(BaseModel):
    n: int
    when: date
    amount: Decimal


# -- the types ------------------------------------------------------------------------


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Record:
    name: str
    point: Point
    at: datetime
    labels: frozenset[str]


class Item(BaseModel):
    id: int
    name: str
    at: datetime
    price: Decimal
    color: Color
    tags: list[str]


AWARE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-5)))
NAIVE = datetime(2023, 12, 31, 23, 59, 58, 5)
UID = UUID("12345678-1234-5678-1234-567812345678")


def make_item(n: int = 1) -> Item:
    return Item(
        id=n,
        name=f"item-{n}",
        at=AWARE + timedelta(hours=n),
        price=Decimal("1.10"),
        color=Color.BLUE,
        tags=["a", "b"],
    )


def make_record(name: str = "r") -> Record:
    return Record(name=name, point=Point(3, -4), at=NAIVE, labels=frozenset({"x", "y"}))


# -- one module-level loader per type, annotated with it ----------------------------


async def load_model(n: int) -> Item:
    CALLS["model"] += 1
    return make_item(n)


async def load_dataclass(n: int) -> Record:
    CALLS["dataclass"] += 1
    return make_record()


async def load_datetime_aware(n: int) -> datetime:
    CALLS["datetime-aware"] += 1
    return AWARE


async def load_datetime_naive(n: int) -> datetime:
    CALLS["datetime-naive"] += 1
    return NAIVE


async def load_date(n: int) -> date:
    CALLS["date"] += 1
    return date(2024, 2, 29)


async def load_time(n: int) -> time:
    CALLS["time"] += 1
    return time(7, 8, 9, 123456)


async def load_uuid(n: int) -> UUID:
    CALLS["uuid"] += 1
    return UID


async def load_decimal(n: int) -> Decimal:
    CALLS["decimal"] += 1
    return Decimal("1.10")


async def load_enum(n: int) -> Color:
    CALLS["enum"] += 1
    return Color.BLUE


async def load_intenum(n: int) -> Level:
    CALLS["intenum"] += 1
    return Level.HIGH


async def load_tuple_fixed(n: int) -> tuple[int, str]:
    CALLS["tuple-fixed"] += 1
    return (7, "seven")


async def load_tuple_variadic(n: int) -> tuple[int, ...]:
    CALLS["tuple-variadic"] += 1
    return (3, 1, 2)


async def load_set_int(n: int) -> set[int]:
    CALLS["set-int"] += 1
    return {5, 1, 3}


async def load_frozenset_str(n: int) -> frozenset[str]:
    CALLS["frozenset-str"] += 1
    return frozenset({"pear", "apple", "fig"})


async def load_list_model(n: int) -> list[Item]:
    CALLS["list-model"] += 1
    return [make_item(1), make_item(2)]


async def load_dict_dataclass(n: int) -> dict[str, Record]:
    CALLS["dict-dataclass"] += 1
    return {"a": make_record("a"), "b": make_record("b")}


async def load_dict_int_keys(n: int) -> dict[int, str]:
    CALLS["dict-int-keys"] += 1
    return {1: "one", 20: "twenty"}


async def load_optional_none(n: int) -> Optional[Item]:  # noqa: UP045 - Optional on purpose
    CALLS["optional-model-none"] += 1
    return None


async def load_optional_value(n: int) -> Optional[Item]:  # noqa: UP045
    CALLS["optional-model-value"] += 1
    return make_item(n)


async def load_literal(n: int) -> Literal["red", "blue"]:
    CALLS["literal"] += 1
    return "blue"


class Case(NamedTuple):
    id: str
    tp: Any
    make: Callable[[], Any]
    load: Callable[[int], Awaitable[Any]]


CASES = [
    Case("model", Item, make_item, load_model),
    Case("dataclass", Record, make_record, load_dataclass),
    Case("datetime-aware", datetime, lambda: AWARE, load_datetime_aware),
    Case("datetime-naive", datetime, lambda: NAIVE, load_datetime_naive),
    Case("date", date, lambda: date(2024, 2, 29), load_date),
    Case("time", time, lambda: time(7, 8, 9, 123456), load_time),
    Case("uuid", UUID, lambda: UID, load_uuid),
    Case("decimal", Decimal, lambda: Decimal("1.10"), load_decimal),
    Case("enum", Color, lambda: Color.BLUE, load_enum),
    Case("intenum", Level, lambda: Level.HIGH, load_intenum),
    Case("tuple-fixed", tuple[int, str], lambda: (7, "seven"), load_tuple_fixed),
    Case("tuple-variadic", tuple[int, ...], lambda: (3, 1, 2), load_tuple_variadic),
    Case("set-int", set[int], lambda: {5, 1, 3}, load_set_int),
    Case(
        "frozenset-str",
        frozenset[str],
        lambda: frozenset({"pear", "apple", "fig"}),
        load_frozenset_str,
    ),
    Case("list-model", list[Item], lambda: [make_item(1), make_item(2)], load_list_model),
    Case(
        "dict-dataclass",
        dict[str, Record],
        lambda: {"a": make_record("a"), "b": make_record("b")},
        load_dict_dataclass,
    ),
    Case("dict-int-keys", dict[int, str], lambda: {1: "one", 20: "twenty"}, load_dict_int_keys),
    Case("optional-model-none", Optional[Item], lambda: None, load_optional_none),  # noqa: UP045
    Case("optional-model-value", Optional[Item], make_item, load_optional_value),  # noqa: UP045
    Case("literal", Literal["red", "blue"], lambda: "blue", load_literal),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


def assert_same(out: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (containers, fields, items)."""
    assert type(out) is type(expected), f"{out!r} is a {type(out)}, not a {type(expected)}"
    assert out == expected
    if isinstance(expected, Decimal):
        assert out.as_tuple() == expected.as_tuple()  # the exponent is kept
    elif isinstance(expected, datetime):
        assert (out.tzinfo is None) == (expected.tzinfo is None)
        assert out.utcoffset() == expected.utcoffset()
    elif isinstance(expected, Enum):
        assert out is expected
    elif isinstance(expected, (list, tuple)):
        assert len(out) == len(expected)
        for got, want in zip(out, expected, strict=True):
            assert_same(got, want)
    elif isinstance(expected, (set, frozenset)):
        assert {(type(e), e) for e in out} == {(type(e), e) for e in expected}
    elif isinstance(expected, dict):
        assert [type(k) for k in out] == [type(k) for k in expected]
        for key, want in expected.items():
            assert_same(out[key], want)
    elif dataclasses.is_dataclass(expected):
        for f in dataclasses.fields(expected):
            assert_same(getattr(out, f.name), getattr(expected, f.name))
    elif isinstance(expected, BaseModel):
        for name in type(expected).model_fields:
            assert_same(getattr(out, name), getattr(expected, name))


# -- the decorator ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
async def test_decorated_coroutine_returns_its_annotated_type(
    any_cache: FallbackCache, case: Case
) -> None:
    cached = cache(cache=any_cache, namespace="typed")(case.load)
    before = CALLS[case.id]
    first = await cached(1)
    assert_same(first, case.make())
    second = await cached(1)
    assert_same(second, case.make())
    assert CALLS[case.id] - before == 1  # the second call was a hit
    # The entry is there, stored as plain JSON (typed only on the way out).
    stored = await any_cache.get(cached.key(1), namespace="typed", default=MISSING)
    assert stored is not MISSING
    if case.id in ("tuple-fixed", "tuple-variadic", "set-int", "frozenset-str"):
        assert type(stored) is list
    # A fresh decorated copy (annotation resolved anew) hits the same entry.
    again = cache(cache=any_cache, namespace="typed")(case.load)
    assert_same(await again(1), case.make())
    assert CALLS[case.id] - before == 1


async def test_forward_reference_in_the_annotation_is_resolved_at_the_first_call(
    any_cache: FallbackCache,
) -> None:
    CURRENT.target = any_cache
    try:
        before = CALLS["late"]
        first = await load_late(3)
        second = await load_late(3)
        expected = LateModel(n=3, when=date(2024, 1, 3), amount=Decimal("2.50"))
        assert_same(first, expected)
        assert_same(second, expected)
        assert str(second.amount) == "2.50"
        assert CALLS["late"] - before == 1
        assert await load_late.invalidate(3) is True
        assert_same(await load_late(3), expected)
        assert CALLS["late"] - before == 2
    finally:
        CURRENT.target = None


async def test_a_decorator_defined_in_a_test_resolves_module_names(
    any_cache: FallbackCache,
) -> None:
    calls: list[int] = []

    @cache(cache=any_cache)
    async def records(n: int) -> dict[str, list[Record]]:
        calls.append(n)
        return {str(i): [make_record(str(i))] for i in range(n)}

    expected = {"0": [make_record("0")], "1": [make_record("1")]}
    assert_same(await records(2), expected)
    assert_same(await records(2), expected)
    assert calls == [2]


# -- get, get_many, get_or_set with type= -------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
async def test_get_with_type(any_cache: FallbackCache, case: Case) -> None:
    await any_cache.set("v:1", case.make())
    assert_same(await any_cache.get("v:1", type=case.tp), case.make())
    # The namespace form names the same entry.
    assert_same(await any_cache.get("1", namespace="v", type=case.tp), case.make())
    assert await any_cache.get("v:absent", type=case.tp, default=MISSING) is MISSING


@pytest.mark.parametrize("case", CASE_PARAMS)
async def test_get_many_with_type(any_cache: FallbackCache, case: Case) -> None:
    await any_cache.set_many({"m:a": case.make(), "m:b": case.make()})
    found = await any_cache.get_many(["m:a", "m:absent", "m:b"], type=case.tp)
    assert sorted(found) == ["m:a", "m:b"]
    assert_same(found["m:a"], case.make())
    assert_same(found["m:b"], case.make())


@pytest.mark.parametrize("case", CASE_PARAMS)
async def test_get_or_set_with_type(any_cache: FallbackCache, case: Case) -> None:
    runs: list[int] = []

    def factory() -> Any:
        runs.append(1)
        return case.make()

    miss = await any_cache.get_or_set("gos:k", factory, type=case.tp)
    assert_same(miss, case.make())
    hit = await any_cache.get_or_set("gos:k", factory, type=case.tp)
    assert_same(hit, case.make())
    assert len(runs) == 1

    async def async_factory() -> Any:
        runs.append(2)
        return case.make()

    assert_same(await any_cache.get_or_set("gos:a", async_factory, type=case.tp), case.make())
    assert_same(await any_cache.get_or_set("gos:a", async_factory, type=case.tp), case.make())
    assert runs == [1, 2]


@pytest.mark.parametrize("case", CASE_PARAMS)
async def test_get_nowait_with_type(any_cache: FallbackCache, case: Case) -> None:
    await any_cache.set("nw:k", case.make())
    got = any_cache.get_nowait("nw:k", type=case.tp)
    if any_cache.primary is None:  # the memory tier serves: the value is there at once
        assert_same(got, case.make())
    else:  # Redis serves: never waits, says "ask get_or_set"
        assert got is MISSING
    assert any_cache.get_nowait("nw:absent", type=case.tp) is MISSING


async def test_without_a_type_values_come_back_as_json_types(any_cache: FallbackCache) -> None:
    item = make_item(4)
    await any_cache.set("plain:model", item)
    got = await any_cache.get("plain:model")
    assert type(got) is dict
    assert got == item.model_dump(mode="json")
    assert got["price"] == "1.10"
    await any_cache.set("plain:tuple", (1, "a"))
    assert await any_cache.get("plain:tuple") == [1, "a"]
    assert type(await any_cache.get("plain:tuple")) is list
    await any_cache.set("plain:set", {3, 1, 2})
    assert await any_cache.get("plain:set") == [1, 2, 3]
    await any_cache.set("plain:record", make_record())
    assert await any_cache.get("plain:record") == {
        "name": "r",
        "point": {"x": 3, "y": -4},
        "at": NAIVE.isoformat(),
        "labels": ["x", "y"],
    }
    # get_or_set without a type gives JSON types on the miss as on the hit.
    miss = await any_cache.get_or_set("plain:gos", lambda: (1, UID))
    hit = await any_cache.get_or_set("plain:gos", lambda: (2, UID))
    assert miss == hit == [1, str(UID)]
    assert type(miss) is list


@pytest.mark.parametrize("tp", [Any, dict, dict[str, Any]])
async def test_json_types_as_the_type_pass_through(any_cache: FallbackCache, tp: Any) -> None:
    await any_cache.set("pass:k", {"a": [1, 2], "b": None})
    assert await any_cache.get("pass:k", type=tp) == {"a": [1, 2], "b": None}


# -- stored data that no longer fits ---------------------------------------------------


STALE = {"id": "not-int", "name": "old", "at": "2020-01-01T00:00:00", "price": "1", "color": "red"}


async def test_stale_data_is_a_counted_miss_for_get(any_cache: FallbackCache) -> None:
    await any_cache.set("stale:k", STALE)
    before = await any_cache.get_statistics()
    assert await any_cache.get("stale:k", type=Item, default=MISSING) is MISSING
    assert await any_cache.get("stale:k", type=Item) is None
    after = await any_cache.get_statistics()
    assert after.type_errors == before.type_errors + 2
    assert after.misses == before.misses + 2
    # The entry itself is still there for readers without the type.
    assert await any_cache.get("stale:k") == STALE
    assert await any_cache.get_many(["stale:k"], type=Item) == {}
    assert (await any_cache.get_statistics()).type_errors == before.type_errors + 3


async def test_stale_data_is_one_counted_miss_per_get(any_cache: FallbackCache) -> None:
    await any_cache.set("stale:one", STALE)
    before = (await any_cache.get_statistics()).type_errors
    assert await any_cache.get("stale:one", type=Item, default="dflt") == "dflt"
    assert (await any_cache.get_statistics()).type_errors == before + 1


async def test_stale_data_makes_get_or_set_reload(any_cache: FallbackCache) -> None:
    await any_cache.set("stale:gos", STALE)
    before = await any_cache.get_statistics()
    item = await any_cache.get_or_set("stale:gos", lambda: make_item(9), type=Item)
    assert_same(item, make_item(9))
    after = await any_cache.get_statistics()
    assert after.type_errors == before.type_errors + 1
    assert after.loader.calls == before.loader.calls + 1
    # The fresh value replaced the stale one.
    assert_same(await any_cache.get("stale:gos", type=Item), make_item(9))


async def test_stale_data_makes_the_decorated_function_rerun_then_hit(
    any_cache: FallbackCache,
) -> None:
    cached = cache(cache=any_cache, namespace="stale")(load_model)
    await any_cache.set(cached.key(5), STALE, namespace="stale")
    before_calls = CALLS["model"]
    before = await any_cache.get_statistics()
    assert_same(await cached(5), make_item(5))
    assert CALLS["model"] - before_calls == 1
    middle = await any_cache.get_statistics()
    assert middle.misses == before.misses + 1  # one call, one miss
    assert middle.type_errors == before.type_errors + 1  # ... counted once
    assert_same(await cached(5), make_item(5))
    assert CALLS["model"] - before_calls == 1
    assert (await any_cache.get_statistics()).type_errors == middle.type_errors


# -- cache_if -----------------------------------------------------------------------------


def is_not_none(value: object) -> bool:
    return value is not None


async def test_cache_if_false_returns_and_stores_nothing(any_cache: FallbackCache) -> None:
    before = (await any_cache.get_statistics()).loader
    assert await any_cache.get_or_set("ci:k", lambda: None, cache_if=is_not_none) is None
    assert await any_cache.get("ci:k", default=MISSING) is MISSING
    assert not await any_cache.exists("ci:k")
    after = (await any_cache.get_statistics()).loader
    assert after.not_cached == before.not_cached + 1
    assert after.calls == before.calls + 1
    # A truthy result is stored, and not counted as not cached.
    value = {"id": 1}
    assert await any_cache.get_or_set("ci:k", lambda: value, cache_if=is_not_none) == value
    assert await any_cache.get("ci:k", default=MISSING) == value
    assert (await any_cache.get_statistics()).loader.not_cached == before.not_cached + 1
    # ... and then hit: the factory does not run.
    assert await any_cache.get_or_set("ci:k", lambda: 1 / 0, cache_if=is_not_none) == value


async def test_cache_if_sees_the_factory_result_and_works_with_type(
    any_cache: FallbackCache,
) -> None:
    seen: list[object] = []

    def keep_expensive(item: Item) -> bool:
        seen.append(item)
        return item.price > 5

    cheap = await any_cache.get_or_set("ci:t", make_item, type=Item, cache_if=keep_expensive)
    assert_same(cheap, make_item())
    assert await any_cache.get("ci:t", default=MISSING) is MISSING
    assert len(seen) == 1
    assert_same(seen[0], make_item())
    dear = make_item(2).model_copy(update={"price": Decimal("9.90")})
    got = await any_cache.get_or_set("ci:t", lambda: dear, type=Item, cache_if=keep_expensive)
    assert_same(got, dear)
    assert_same(await any_cache.get("ci:t", type=Item), dear)


async def test_cache_if_on_the_decorator(any_cache: FallbackCache) -> None:
    calls: list[int] = []

    @cache(cache=any_cache, cache_if=is_not_none)
    async def find(n: int) -> Item | None:
        calls.append(n)
        return make_item(n) if n else None

    before = (await any_cache.get_statistics()).loader
    assert await find(0) is None
    assert await find(0) is None
    assert calls == [0, 0]  # not stored: the body ran again
    assert await any_cache.get(find.key(0), default=MISSING) is MISSING
    after = (await any_cache.get_statistics()).loader
    assert after.not_cached == before.not_cached + 2
    assert_same(await find(1), make_item(1))
    assert_same(await find(1), make_item(1))
    assert calls == [0, 0, 1]
    assert await any_cache.get(find.key(1), type=Item) == make_item(1)
    assert (await any_cache.get_statistics()).loader.not_cached == before.not_cached + 2


async def test_cache_if_on_the_bound_decorator(any_cache: FallbackCache) -> None:
    calls: list[int] = []

    @any_cache.cached(cache_if=lambda found: bool(found))
    async def search(n: int) -> list[Record]:
        calls.append(n)
        return [make_record(str(i)) for i in range(n)]

    assert await search(0) == []
    assert await search(0) == []
    assert_same(await search(2), [make_record("0"), make_record("1")])
    assert_same(await search(2), [make_record("0"), make_record("1")])
    assert calls == [0, 0, 2]


# -- annotations the decorator cannot use ----------------------------------------------


async def test_an_unresolvable_annotation_gives_json_types_and_one_warning(
    any_cache: FallbackCache, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cache(cache=any_cache)
    async def broken(n: int) -> Nope:  # type: ignore[name-defined] # noqa: F821
        calls.append(n)
        return make_item(n)

    with caplog.at_level(logging.WARNING, logger="chenu_cache"):
        first = await broken(1)
        second = await broken(1)
        third = await broken(2)
    assert first == second == make_item(1).model_dump(mode="json")
    assert type(first) is dict
    assert type(second) is dict
    assert third == make_item(2).model_dump(mode="json")
    assert calls == [1, 2]
    warnings = [
        r for r in caplog.records if r.name == "chenu_cache" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "broken" in warnings[0].getMessage()
    assert "cannot be resolved" in warnings[0].getMessage()


async def test_type_any_on_the_decorator_keeps_json_types(any_cache: FallbackCache) -> None:
    calls: list[int] = []

    @cache(cache=any_cache, type=Any)
    async def raw_item(n: int) -> Item:
        calls.append(n)
        return make_item(n)

    first = await raw_item(1)
    second = await raw_item(1)
    assert type(first) is dict
    assert type(second) is dict
    assert first == second == make_item(1).model_dump(mode="json")
    assert calls == [1]


async def test_type_on_the_decorator_overrides_the_annotation(any_cache: FallbackCache) -> None:
    @cache(cache=any_cache, type=tuple[int, ...])
    async def numbers(n: int) -> list[int]:
        return list(range(n))

    assert_same(await numbers(3), (0, 1, 2))
    assert_same(await numbers(3), (0, 1, 2))


# -- copies -------------------------------------------------------------------------------


async def test_mutating_a_returned_model_does_not_change_the_cached_one(
    any_cache: FallbackCache,
) -> None:
    cached = cache(cache=any_cache, namespace="mut")(load_model)
    before = CALLS["model"]
    first = await cached(7)
    first.name = "changed"
    first.tags.append("extra")
    second = await cached(7)
    assert_same(second, make_item(7))
    second.tags.clear()
    third = await cached(7)
    assert_same(third, make_item(7))
    assert CALLS["model"] - before == 1
    got = await any_cache.get(cached.key(7), namespace="mut", type=Item)
    got.price = Decimal("0")
    assert_same(await any_cache.get(cached.key(7), namespace="mut", type=Item), make_item(7))


async def test_mutating_a_returned_container_does_not_change_the_cached_one(
    any_cache: FallbackCache,
) -> None:
    await any_cache.set("mut:records", {"a": make_record("a")})
    got = await any_cache.get("mut:records", type=dict[str, Record])
    got["a"].point.x = 100
    got["b"] = make_record("b")
    assert_same(await any_cache.get("mut:records", type=dict[str, Record]), {"a": make_record("a")})
