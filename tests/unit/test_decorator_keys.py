"""Default decorator keys are injective: different arguments never share an entry."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chenu_cache import FallbackCache
from chenu_cache._decorator import make_key


class Color(enum.IntEnum):
    RED = 1


class Name(str, enum.Enum):
    ADA = "ada"


class Point(NamedTuple):
    x: int
    y: int


@dataclass
class User:
    id: int


# Pairs that plain JSON (the old encoding) wrote identically.
COLLIDING_BEFORE = [
    ({1: "a"}, {"1": "a"}),
    ((1, 2), [1, 2]),
    (Color.RED, 1),
    (Name.ADA, "ada"),
    (Point(1, 2), (1, 2)),
    ({1, 2}, frozenset({1, 2})),
    ({"@tuple": [1, 2]}, (1, 2)),
    ({"User": {"id": 1}}, User(1)),
    (timedelta(microseconds=1), timedelta(microseconds=2)),
    (Decimal("1.0"), Decimal("1.00")),
    ({True: 1}, {1: 1}),
    ([(1,)], [[1]]),
]


@pytest.mark.parametrize(("a", "b"), COLLIDING_BEFORE)
def test_different_arguments_make_different_keys(a: object, b: object) -> None:
    assert make_key("m.f", [a]) != make_key("m.f", [b])


def test_keys_stay_readable_for_plain_arguments() -> None:
    assert make_key("m.f", ["u1", 2, None, [1, 2], {"b": 1, "a": True}]) == (
        'm.f:["u1",2,null,[1,2],{"a":true,"b":1}]'
    )
    assert make_key("m.f", [date(2024, 1, 2)]) == 'm.f:[{"@date":"2024-01-02"}]'


def test_dict_key_order_does_not_matter() -> None:
    assert make_key("m.f", [{1: "a", 2: "b"}]) == make_key("m.f", [{2: "b", 1: "a"}])
    assert make_key("m.f", [{"x": 1, "y": 2}]) == make_key("m.f", [{"y": 2, "x": 1}])


def _typed(value: Any) -> object:
    """The value with every type made explicit: equal only for the same argument."""
    kind = type(value)
    if kind in (list, tuple):
        return (kind.__name__, tuple(_typed(v) for v in value))
    if kind is dict:
        return ("dict", frozenset((_typed(k), _typed(v)) for k, v in value.items()))
    if kind in (set, frozenset):
        return (kind.__name__, frozenset(_typed(v) for v in value))
    return (kind.__name__, value)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.text(alphabet="@1a", max_size=3),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2000, 1, 2)),
    st.uuids().map(lambda u: uuid.UUID(int=u.int % 3)),
)
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner), max_leaves=4)
values = st.recursive(
    hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(hashables, inner, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.sets(hashables, max_size=3),
    ),
    max_leaves=8,
)


@given(values, values)
def test_equal_keys_only_for_the_same_argument(a: object, b: object) -> None:
    if make_key("m.f", [a]) == make_key("m.f", [b]):
        assert _typed(a) == _typed(b)


async def test_the_decorator_keeps_them_apart() -> None:
    cache = FallbackCache(read_env=False)
    calls: list[object] = []

    @cache.cached(ttl=60)
    async def echo(arg: object) -> str:
        calls.append(arg)
        return repr(arg)

    assert await echo({1: "a"}) == "{1: 'a'}"
    assert await echo({"1": "a"}) == "{'1': 'a'}"
    assert await echo((1, 2)) == "(1, 2)"
    assert await echo([1, 2]) == "[1, 2]"
    assert len(calls) == 4
    assert await echo({1: "a"}) == "{1: 'a'}"  # a hit: the same call shares its entry
    assert len(calls) == 4
    await cache.close()
