"""Serializers and the codec: round trips, refusals, and the security of signed pickle."""

from __future__ import annotations

import enum
import json
import pickle
import zlib
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chenu_cache import (
    Codec,
    ConfigurationError,
    DeserializationError,
    JsonSerializer,
    PickleSerializer,
    SerializationError,
    Serializer,
    SignatureError,
    ValueTooLargeError,
)
from chenu_cache import serializers as serializers_module

SECRET = b"0123456789abcdef-test-secret"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_json_round_trip_equals_the_standard_library(value: Any) -> None:
    codec = Codec()
    expected = json.loads(json.dumps(value))
    assert codec.decode(codec.encode(value)) == expected
    # Whichever decoder is installed, the stdlib path agrees with it.
    payload = JsonSerializer().dumps(value)
    assert serializers_module._stdlib_loads(payload) == JsonSerializer().loads(payload)


class _Level(enum.IntEnum):
    LOW = 1


wild_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.just(_Level.LOW)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(value=wild_values)
def test_the_fast_encoder_accepts_and_refuses_as_the_standard_library(value: Any) -> None:
    """orjson encodes only what the stdlib would encode alike; the rest takes its path."""
    serializer = JsonSerializer()
    try:
        reference = serializer._stdlib_dumps(value)
    except SerializationError:
        with pytest.raises(SerializationError):
            serializer.dumps(value)
        return
    stored = serializer.dumps(value)
    assert serializer.loads(stored) == serializer.loads(reference)
    assert serializers_module._stdlib_loads(stored) == json.loads(reference)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 10**30, [1, 2**70, {"a": -(10**25)}], "12345678901234567890"],
)
def test_big_integers_come_back_as_integers(value: Any) -> None:
    codec = Codec()
    out = codec.decode(codec.encode(value))
    assert out == value
    assert type(out) is type(value)


def test_json_types_follow_the_json_mapping() -> None:
    codec = Codec()
    assert codec.decode(codec.encode((1, 2))) == [1, 2]
    assert codec.decode(codec.encode({1: "a"})) == {"1": "a"}
    assert codec.decode(codec.encode(None)) is None


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({"nested": [object()]}, "object"),
        (complex(1, 2), "complex"),
        ({1, object()}, "object"),
        (b"bytes", "bytes"),
    ],
)
def test_unencodable_value_names_its_type(value: Any, type_name: str) -> None:
    with pytest.raises(SerializationError, match=type_name) as info:
        Codec().encode(value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "\ud800"])
def test_values_json_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError):
        Codec().encode(value)


def test_cycles_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        Codec().encode(loop)


def test_header_marks_format_and_foreign_bytes_are_refused() -> None:
    codec = Codec()
    data = codec.encode({"a": 1})
    assert data[:3] == bytes((0xC1, JsonSerializer.format_id, 0))
    for foreign in [b'{"a": 1}', b"", b"\x80\x05K\x01.", b"\xc1"]:
        with pytest.raises(DeserializationError):
            codec.decode(foreign)
    pickled = Codec(PickleSerializer(SECRET)).encode({"a": 1})
    with pytest.raises(DeserializationError, match="format 0x50"):
        codec.decode(pickled)


def test_compression_above_threshold_only() -> None:
    codec = Codec(compress_threshold=100)
    small, large = "x" * 50, "y" * 10_000
    assert codec.encode(small)[2] == 0
    packed = codec.encode(large)
    assert packed[2] == 1
    assert len(packed) < 1000
    assert codec.decode(packed) == large
    # Incompressible data is kept as it is.
    assert Codec(compress_threshold=10).encode("abcdefghijkl")[2] == 0


def test_maximum_size_is_enforced_on_write_and_on_inflate() -> None:
    codec = Codec(max_value_size=1000, compress_threshold=10)
    with pytest.raises(ValueTooLargeError, match="1000"):
        codec.encode("x" * 2000)
    bomb = bytes((0xC1, JsonSerializer.format_id, 1)) + zlib.compress(b'"' + b"x" * 10**6 + b'"')
    with pytest.raises(DeserializationError, match="max_value_size"):
        codec.decode(bomb)


@pytest.mark.parametrize(
    "kwargs",
    [{"compress_threshold": -1}, {"max_value_size": 0}],
)
def test_codec_refuses_bad_options(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        Codec(**kwargs)


def test_serializers_satisfy_the_protocol() -> None:
    assert isinstance(JsonSerializer(), Serializer)
    assert isinstance(PickleSerializer(SECRET), Serializer)


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_signed_pickle_round_trips_python_objects() -> None:
    codec = Codec(PickleSerializer(SECRET))
    value = {"when": datetime(2026, 1, 1), "point": Point(1, 2), "set": {1, 2}}
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("secret", [b"", b"short", "", None])
def test_signed_pickle_requires_a_real_secret(secret: Any) -> None:
    with pytest.raises(ConfigurationError):
        PickleSerializer(secret)


class Boom:
    def __reduce__(self) -> Any:
        return (pytest.fail, ("a forged pickle was executed",))


def test_forged_and_tampered_pickles_are_refused_unexecuted() -> None:
    serializer = PickleSerializer(SECRET)
    forged = pickle.dumps(Boom())
    for data in [
        forged,
        b"\x00" * 32 + forged,
        PickleSerializer(b"another-secret-of-16+bytes").dumps(Boom()),
    ]:
        with pytest.raises(SignatureError):
            serializer.loads(data)
    good = bytearray(serializer.dumps([1, 2, 3]))
    good[-2] ^= 0xFF
    with pytest.raises(SignatureError):
        serializer.loads(bytes(good))


def test_unpicklable_value_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="generator"):
        PickleSerializer(SECRET).dumps(x for x in range(3))


def test_repr_never_shows_the_secret() -> None:
    assert SECRET.decode() not in repr(PickleSerializer(SECRET))
    assert SECRET.decode() not in repr(Codec(PickleSerializer(SECRET)))
