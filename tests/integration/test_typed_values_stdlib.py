"""Standard-library types round-trip through the decorator and ``get(type=)`` (SPEC §11).

No pydantic import here: the `no_pydantic` nox session runs this file where pydantic
is not installed (the standard-library conversions), the rest of the suite where it is
(pydantic's ``TypeAdapter``). On memory, Redis, Cluster and Sentinel.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, Literal, Optional
from uuid import UUID

import pytest

from chenu_cache import FallbackCache

if os.environ.get("CHENU_CACHE_EXPECT_NO_PYDANTIC"):
    assert importlib.util.find_spec("pydantic") is None, "this session must run without pydantic"


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
class Visit:
    where: Point
    at: datetime
    tags: frozenset[str]
    amount: Decimal
    color: Color
    note: Optional[str] = None  # noqa: UP045 - the typing spelling, on purpose
    extra: list[date] = field(default_factory=list)


AWARE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-3)))
VISIT = Visit(Point(1, -2), AWARE, frozenset({"b", "a"}), Decimal("1.10"), Color.RED, None, [])

CASES: list[tuple[str, Any, Any]] = [
    ("dataclass", Visit, VISIT),
    ("datetime", datetime, AWARE),
    ("naive", datetime, datetime(2023, 12, 31, 23, 59, 58)),
    ("date", date, date(2024, 2, 29)),
    ("time", time, time(7, 8, 9, 5)),
    ("uuid", UUID, UUID(int=42)),
    ("decimal", Decimal, Decimal("-0.0100")),
    ("enum", Color, Color.BLUE),
    ("intenum", Level, Level.HIGH),
    ("tuple", tuple[int, str], (7, "seven")),
    ("tuple-any-length", tuple[int, ...], (3, 1, 2)),
    ("set", set[int], {5, 1, 3}),
    ("frozenset", frozenset[str], frozenset({"pear", "fig"})),
    ("nested", dict[str, list[Visit]], {"a": [VISIT, VISIT]}),
    ("int-keys", dict[int, Color], {1: Color.RED, 2: Color.BLUE}),
    ("optional-none", Optional[Point], None),  # noqa: UP045
    ("optional-value", Optional[Point], Point(0, 0)),  # noqa: UP045
    ("union", int | str, "text"),
    ("literal", Literal["a", "b"], "b"),
]


def same(out: Any, expected: Any) -> bool:
    """Equal, and of the same type all the way down."""
    if type(out) is not type(expected) or out != expected:
        return False
    if isinstance(expected, Decimal):
        return bool(out.as_tuple() == expected.as_tuple())
    if isinstance(expected, (list, tuple)):
        return all(same(a, b) for a, b in zip(out, expected, strict=True))
    if isinstance(expected, dict):
        return all(same(k, k) and same(out[k], v) for k, v in expected.items())
    if isinstance(expected, (set, frozenset)):
        return {(type(e), e) for e in out} == {(type(e), e) for e in expected}
    if hasattr(expected, "__dataclass_fields__"):
        return all(same(getattr(out, f), getattr(expected, f)) for f in vars(expected))
    return True


@pytest.mark.parametrize(("name", "kind", "value"), CASES, ids=[c[0] for c in CASES])
async def test_get_with_type(any_cache: FallbackCache, name: str, kind: Any, value: Any) -> None:
    await any_cache.set(f"t:{name}", value)
    assert same(await any_cache.get(f"t:{name}", type=kind), value)
    assert same((await any_cache.get_many([f"t:{name}"], type=kind))[f"t:{name}"], value)


@pytest.mark.parametrize(("name", "kind", "value"), CASES, ids=[c[0] for c in CASES])
async def test_the_decorator_builds_its_return_annotation(
    any_cache: FallbackCache, name: str, kind: Any, value: Any
) -> None:
    calls = 0

    async def load(n: int) -> Any:
        nonlocal calls
        calls += 1
        return value

    load.__annotations__["return"] = kind  # each case's own annotation
    cached = any_cache.cached(namespace="typed", key_builder=lambda n: f"{name}:{n}")(load)
    first, second = await cached(1), await cached(1)
    assert same(first, value), f"miss gave {first!r}"
    assert same(second, value), f"hit gave {second!r}"
    assert calls == 1


async def test_without_a_type_values_are_json_types(any_cache: FallbackCache) -> None:
    await any_cache.set("plain", VISIT)
    assert await any_cache.get("plain") == {
        "where": {"x": 1, "y": -2},
        "at": AWARE.isoformat(),
        "tags": ["a", "b"],
        "amount": "1.10",
        "color": "red",
        "note": None,
        "extra": [],
    }
