"""Values that come back as themselves (SPEC §11), without Redis.

Every case is encoded with `JsonSerializer().dumps()` and read back with
``value_type(T).parse()``, twice: with pydantic (``TypeAdapter``), and with pydantic
taken away (the standard-library conversions), which the ``mode`` fixture emulates.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any, Literal, NamedTuple, Optional
from uuid import UUID

import pytest

from chenu_cache import _value_types
from chenu_cache._value_types import value_type
from chenu_cache.exceptions import CacheTypeError
from chenu_cache.serializers import JsonSerializer

try:
    from pydantic import BaseModel
except ImportError:  # the real-absence test below runs then
    BaseModel = None  # type: ignore[assignment,misc]

HAVE_PYDANTIC = BaseModel is not None


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
    note: str = "none"


class Opaque:
    """A class neither pydantic nor the standard-library conversions can build."""

    def __init__(self, secret: object) -> None:
        self.secret = secret


if HAVE_PYDANTIC:

    class Item(BaseModel):  # type: ignore[misc,valid-type]
        id: int
        name: str
        at: datetime
        price: Decimal
        color: Color
        tags: list[str]

else:  # pragma: no cover - only without pydantic
    Item = None  # type: ignore[assignment,misc]


AWARE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
NAIVE = datetime(2023, 12, 31, 23, 59, 58)


def make_item(n: int = 1) -> Any:
    return Item(
        id=n,
        name=f"item-{n}",
        at=AWARE + timedelta(days=n),
        price=Decimal("1.10"),
        color=Color.BLUE,
        tags=["a", "b"],
    )


def make_record(name: str = "r") -> Record:
    return Record(
        name=name,
        point=Point(3, -4),
        at=NAIVE,
        labels=frozenset({"x", "y", "z"}),
        note="kept",
    )


class Case(NamedTuple):
    id: str
    tp: Any
    make: Callable[[], Any]
    needs_pydantic: bool = False


CASES = [
    Case("model", Item, make_item, True),
    Case("dataclass", Record, make_record),
    Case("datetime-aware", datetime, lambda: AWARE),
    Case("datetime-naive", datetime, lambda: NAIVE),
    Case("date", date, lambda: date(2024, 2, 29)),
    Case("time", time, lambda: time(7, 8, 9, 123456)),
    Case("uuid", UUID, lambda: UUID("12345678-1234-5678-1234-567812345678")),
    Case("decimal", Decimal, lambda: Decimal("1.10")),
    Case("enum", Color, lambda: Color.BLUE),
    Case("intenum", Level, lambda: Level.HIGH),
    Case("tuple-fixed", tuple[int, str], lambda: (7, "seven")),
    Case("tuple-variadic", tuple[int, ...], lambda: (3, 1, 2)),
    Case("set-int", set[int], lambda: {5, 1, 3}),
    Case("frozenset-str", frozenset[str], lambda: frozenset({"pear", "apple", "fig"})),
    Case("list-model", list[Item], lambda: [make_item(1), make_item(2)], True),
    Case("dict-dataclass", dict[str, Record], lambda: {"a": make_record("a"), "b": make_record()}),
    Case("dict-int-keys", dict[int, str], lambda: {1: "one", 20: "twenty"}),
    Case("optional-model-none", Optional[Item], lambda: None, True),  # noqa: UP045
    Case("optional-model-value", Optional[Item], make_item, True),  # noqa: UP045
    Case("literal", Literal["red", "blue"], lambda: "blue"),
]


def assert_same(out: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (containers, fields, items)."""
    assert type(out) is type(expected), f"{out!r} is a {type(out)}, not a {type(expected)}"
    assert out == expected
    if isinstance(expected, Decimal):
        assert out.as_tuple() == expected.as_tuple()  # the exponent is kept: 1.10, not 1.1
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
    elif HAVE_PYDANTIC and isinstance(expected, BaseModel):
        for name in type(expected).model_fields:
            assert_same(getattr(out, name), getattr(expected, name))


@pytest.fixture(params=["pydantic", "stdlib"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """With pydantic (when installed), or with pydantic taken away."""
    _value_types._known.clear()
    if request.param == "pydantic":
        if not HAVE_PYDANTIC:
            pytest.skip("pydantic is not installed")
        monkeypatch.setattr(_value_types, "_pydantic_checked", False)
        monkeypatch.setattr(_value_types, "_type_adapter", None)
        assert _value_types._pydantic_adapter() is not None
    else:
        monkeypatch.setattr(_value_types, "_pydantic_checked", True)
        monkeypatch.setattr(_value_types, "_type_adapter", None)
    yield request.param
    _value_types._known.clear()


def applicable(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.skip("pydantic not installed")]
            if case.needs_pydantic and not HAVE_PYDANTIC
            else [],
        )
        for case in cases
    ]


@pytest.mark.parametrize("case", applicable(CASES))
def test_round_trip_gives_the_same_type(mode: str, case: Case) -> None:
    value = case.make()
    data = JsonSerializer().dumps(value)
    if mode == "stdlib" and case.needs_pydantic:
        with pytest.raises(CacheTypeError, match="pydantic"):
            value_type(case.tp)
        return
    kind = value_type(case.tp)
    assert kind is not None
    out = kind.parse(data)
    assert_same(out, case.make())
    # Reading the same bytes again gives an equal value, not the same object.
    again = kind.parse(data)
    assert_same(again, out)
    if isinstance(out, (list, dict, set)) or dataclasses.is_dataclass(out):
        assert again is not out
    # convert() reads the decoded JSON data the same way parse() reads the bytes.
    assert_same(kind.convert(json.loads(data)), case.make())


@pytest.mark.parametrize("case", applicable(CASES))
def test_the_mode_is_the_one_asked_for(mode: str, case: Case) -> None:
    """The stdlib mode never reaches pydantic; the pydantic mode uses its validator."""
    if mode == "stdlib" and case.needs_pydantic:
        return
    kind = value_type(case.tp)
    assert kind is not None
    if mode == "stdlib":
        assert _value_types._type_adapter is None
        assert getattr(kind.parse, "__module__", None) == _value_types.__name__
    else:
        assert getattr(kind.parse, "__module__", None) != _value_types.__name__


def test_value_type_is_remembered(mode: str) -> None:
    assert value_type(tuple[int, str]) is value_type(tuple[int, str])
    assert value_type(Record) is value_type(Record)
    kind = value_type(Decimal)
    assert value_type(kind) is kind  # a ValueType passes through


@pytest.mark.parametrize("case", applicable(CASES))
def test_what_is_stored_is_plain_json(case: Case) -> None:
    value = case.make()
    data = JsonSerializer().dumps(value)
    json.loads(data)  # any client can read it
    # The bytes carry no type information: equal values store equal bytes.
    assert JsonSerializer().dumps(case.make()) == data


def test_stored_json_is_the_plain_form_of_the_value() -> None:
    dumps = JsonSerializer().dumps
    assert json.loads(dumps(AWARE)) == AWARE.isoformat()
    assert json.loads(dumps(date(2024, 2, 29))) == "2024-02-29"
    assert json.loads(dumps(time(7, 8, 9))) == "07:08:09"
    uid = UUID("12345678-1234-5678-1234-567812345678")
    assert json.loads(dumps(uid)) == str(uid)
    assert json.loads(dumps(Decimal("1.10"))) == "1.10"
    assert json.loads(dumps(Color.RED)) == "red"
    assert json.loads(dumps(Level.HIGH)) == 2
    assert json.loads(dumps((1, "a"))) == [1, "a"]
    assert json.loads(dumps({2: "b", 1: "a"})) == {"2": "b", "1": "a"}
    record = make_record()
    assert json.loads(dumps(record)) == {
        "name": record.name,
        "point": {"x": 3, "y": -4},
        "at": NAIVE.isoformat(),
        "labels": sorted(record.labels),
        "note": "kept",
    }


@pytest.mark.skipif(not HAVE_PYDANTIC, reason="pydantic is not installed")
def test_a_model_stores_its_json_dump() -> None:
    item = make_item(3)
    data = JsonSerializer().dumps(item)
    assert json.loads(data) == item.model_dump(mode="json")
    assert json.loads(data)["price"] == "1.10"
    assert json.loads(data)["at"] == item.at.isoformat()


def test_a_set_stores_as_a_sorted_list_and_equal_sets_give_equal_bytes() -> None:
    words = ["kiwi", "apple", "mango", "banana", "cherry", "date", "elderberry"]
    forward = set(words)
    backward: set[str] = set()
    for word in reversed(words):
        backward.add(word)
    data = JsonSerializer().dumps(forward)
    assert json.loads(data) == sorted(words)
    assert JsonSerializer().dumps(backward) == data
    assert JsonSerializer().dumps(frozenset(words)) == data
    numbers = {10, -3, 7, 0, 1000}
    assert json.loads(JsonSerializer().dumps(numbers)) == sorted(numbers)


@pytest.mark.parametrize("seed", ["1", "2"])
def test_set_bytes_do_not_depend_on_the_hash_seed(seed: str) -> None:
    """Equal sets store equal bytes in every process, whatever its string hashing."""
    words = ["kiwi", "apple", "mango", "banana", "cherry", "date", "elderberry"]
    code = (
        "import sys; from chenu_cache.serializers import JsonSerializer; "
        f"sys.stdout.buffer.write(JsonSerializer().dumps(set({words!r})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True
    ).stdout
    assert out == JsonSerializer().dumps(set(words))
    assert json.loads(out) == sorted(words)


MISFITS = [
    pytest.param(int, b'"x"', id="str-for-int"),
    pytest.param(Record, b'{"a":1}', id="dataclass-missing-fields"),
    pytest.param(Record, b"[1,2]", id="list-for-dataclass"),
    pytest.param(Point, b'{"x":1,"y":"north"}', id="dataclass-bad-field"),
    pytest.param(tuple[int, str], b"[1]", id="tuple-too-short"),
    pytest.param(tuple[int, str], b'[1,"a",2]', id="tuple-too-long"),
    pytest.param(Color, b'"purple"', id="enum-unknown-value"),
    pytest.param(Level, b"3", id="intenum-unknown-value"),
    pytest.param(date, b'"2024-13-01"', id="bad-date"),
    pytest.param(datetime, b'"yesterday"', id="bad-datetime"),
    pytest.param(UUID, b'"not-a-uuid"', id="bad-uuid"),
    pytest.param(Decimal, b'"one"', id="bad-decimal"),
    pytest.param(Literal["red", "blue"], b'"green"', id="literal-outside"),
    pytest.param(dict[int, str], b'{"x":"y"}', id="non-int-key"),
    pytest.param(set[int], b'{"a":1}', id="object-for-set"),
    pytest.param(list[int], b'[1,"x"]', id="bad-list-item"),
]


@pytest.mark.parametrize(("tp", "data"), MISFITS)
def test_data_that_does_not_fit_raises_value_error(mode: str, tp: Any, data: bytes) -> None:
    kind = value_type(tp)
    assert kind is not None
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's and ours share only this
        kind.parse(data)


@pytest.mark.skipif(not HAVE_PYDANTIC, reason="pydantic is not installed")
@pytest.mark.parametrize(
    "data",
    [b'{"id":"not-int","name":"n","at":"2024-01-01T00:00:00","price":"1","color":"red"}', b"[]"],
)
def test_a_model_that_does_not_fit_raises_value_error(data: bytes) -> None:
    _value_types._known.clear()
    try:
        kind = value_type(Item)
        assert kind is not None
        with pytest.raises(ValueError):  # noqa: PT011
            kind.parse(data)
    finally:
        _value_types._known.clear()


@pytest.mark.parametrize("tp", [Any, dict, dict[str, Any], list[Any], list, object])
def test_json_types_pass_through(mode: str, tp: Any) -> None:
    assert value_type(tp) is None


@pytest.mark.parametrize("tp", [Opaque, list[Opaque], dict[str, Opaque]])
def test_an_arbitrary_class_is_refused(mode: str, tp: Any) -> None:
    with pytest.raises(CacheTypeError, match="Opaque"):
        value_type(tp)


def test_a_refused_type_is_a_type_error() -> None:
    assert issubclass(CacheTypeError, TypeError)


@dataclass
class WithDefaults:
    name: str
    items: list[int] = field(default_factory=list)
    computed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.computed = len(self.items)


def test_a_dataclass_field_left_out_takes_its_default(mode: str) -> None:
    kind = value_type(WithDefaults)
    assert kind is not None
    out = kind.parse(b'{"name":"n"}')
    assert_same(out, WithDefaults("n"))
    full = kind.parse(JsonSerializer().dumps(WithDefaults("m", [1, 2])))
    assert_same(full, WithDefaults("m", [1, 2]))
    assert full.computed == 2


def test_without_pydantic_installed_the_stdlib_types_still_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs only where pydantic truly cannot be imported (the import_minimal session)."""
    if importlib.util.find_spec("pydantic") is not None:
        pytest.skip("pydantic is installed: this checks its real absence")
    monkeypatch.setattr(_value_types, "_pydantic_checked", False)
    monkeypatch.setattr(_value_types, "_type_adapter", None)
    _value_types._known.clear()
    try:
        for tp, value in [
            (Record, make_record()),
            (datetime, AWARE),
            (datetime, NAIVE),
            (dict[str, Record], {"k": make_record("k")}),
            (tuple[int, str], (1, "a")),
        ]:
            kind = value_type(tp)
            assert kind is not None
            assert_same(kind.parse(JsonSerializer().dumps(value)), value)
        assert _value_types._pydantic_checked is True
        assert _value_types._type_adapter is None
        with pytest.raises(CacheTypeError):
            value_type(Opaque)
    finally:
        _value_types._known.clear()
