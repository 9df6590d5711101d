"""Turning values into the bytes a backend stores, and back.

A `Serializer` maps one value to bytes and back. The `Codec` wraps it with
what every stored entry needs: a three-byte header (so foreign bytes and other formats
are recognised instead of misread), optional compression above a size threshold, and a
size limit. Backends never see anything but the codec's bytes.

Header layout: ``0xC1`` (a byte that never starts valid UTF-8 text or a pickle, so
bytes written by other software are told apart), the serializer's ``format_id``, and a
flags byte (bit 0: zlib-compressed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import pickle
import re
import zlib
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, cast, runtime_checkable
from uuid import UUID

from .exceptions import (
    ConfigurationError,
    DeserializationError,
    SerializationError,
    SignatureError,
    ValueTooLargeError,
)

_orjson: Any
try:  # the `fast` extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by the import_minimal nox session
    _orjson = None
_HAVE_ORJSON: bool = _orjson is not None

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "Codec",
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
]

DEFAULT_MAX_VALUE_SIZE = 8 * 1024 * 1024
"""Largest serialized value accepted by default (8 MiB), before compression."""

_MAGIC = 0xC1
_FLAG_ZLIB = 0x01


@runtime_checkable
class Serializer(Protocol):
    """Encodes one value to bytes and decodes it back.

    Contract: ``loads(dumps(v))`` equals ``v`` up to the serializer's documented type
    mapping; ``dumps`` raises `SerializationError` naming the
    type it cannot encode, and ``loads`` raises
    `DeserializationError` on bytes it did not produce.
    ``format_id`` (0-255; 128-255 are left to third parties) is written into every
    entry's header so that a cache never decodes another format's bytes.
    """

    @property
    def format_id(self) -> int:
        """One byte naming the format in stored headers."""
        ...

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by `dumps()`."""
        ...


def _refuse(value: object) -> object:
    raise SerializationError(
        f"{type(value).__module__}.{type(value).__qualname__} is not JSON serializable; "
        "convert it first, or use another serializer"
    )


def _set_order(item: object) -> str:
    return _ORDER_ENCODER.encode(item)


def to_json_data(value: object) -> object:
    """The plain JSON form of a value JSON has no type for (SPEC §11), one level deep.

    pydantic models (``model_dump(mode="json")``), dataclasses (their fields), ``datetime``,
    ``date`` and ``time`` (ISO 8601), ``UUID`` and ``Decimal`` (their text, which keeps a
    Decimal's exponent), ``Enum`` (its value), sets and frozensets (a list, sorted, so
    equal sets store equal bytes in every process). The encoder calls it again for what
    the result holds; anything else is refused with `SerializationError`.
    """
    kind = type(value)
    if hasattr(kind, "__pydantic_serializer__") and not isinstance(value, type):
        return value.model_dump(mode="json")  # type: ignore[attr-defined]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # unorderable members: order them by their JSON text
            return sorted(value, key=_set_order)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return _refuse(value)


_ORDER_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True, default=to_json_data
)


# A number of 19+ digits may not fit in 64 bits, which orjson would read back as a float.
_LONG_NUMBER = re.compile(r"(?:^|[\[:,])-?\d{19}")

# orjson encodes only what the stdlib encoder would encode the same way: subclasses
# (an IntEnum, a str subclass), dataclasses and datetimes are handed to _not_plain,
# which sends the value to the standard library.
_ORJSON_PLAIN = (
    (
        _orjson.OPT_PASSTHROUGH_SUBCLASS
        | _orjson.OPT_PASSTHROUGH_DATACLASS
        | _orjson.OPT_PASSTHROUGH_DATETIME
    )
    if _HAVE_ORJSON
    else 0
)


def _not_plain(value: object) -> object:
    kind = type(value)
    if kind in _ORJSON_CONVERTS or hasattr(kind, "__pydantic_serializer__"):
        return to_json_data(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_data(value)
    raise TypeError(type(value).__name__)


# What orjson hands back that the stdlib path would convert the same way (datetimes
# are passed through to keep their text the stdlib's: isoformat()).
_ORJSON_CONVERTS = frozenset({datetime, date, time, Decimal, set, frozenset})


class JsonSerializer(Serializer):
    """JSON, the default: readable by any client, and safe to read from a shared Redis.

    Accepts ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``, ``tuple``
    and ``dict``, and the types `to_json_data` converts (pydantic models, dataclasses,
    datetimes, UUID, Decimal, Enum, sets), nested in one another. Read back without a
    type, they are JSON types (tuples and sets as lists, datetimes as strings,
    non-``str`` dict keys as their JSON string form, as with `json.dumps()`); read with
    ``type=`` (or by a decorated function, from its return annotation), they are built
    back into that type. With the ``fast`` extra, orjson encodes
    and decodes what it handles exactly as the standard library would (plain data,
    no NaN, no subclass, no non-``str`` key); everything else takes the standard
    library's path, so what is stored, refused or read back never depends on the extra.
    """

    format_id = 0x4A  # "J"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=to_json_data
        )

    def dumps(self, value: Any) -> bytes:
        if _HAVE_ORJSON:
            try:
                data = cast(bytes, _orjson.dumps(value, default=_not_plain, option=_ORJSON_PLAIN))
            except TypeError:
                pass  # not plain JSON data: the stdlib decides, and says why
            else:
                # orjson writes NaN and infinities as null where the stdlib refuses
                # them: a null anywhere sends the value down the authoritative path.
                # Every integer orjson wrote fits in 64 bits (it refuses wider ones),
                # so orjson reads it back exactly: no long-number mark is needed.
                if b"null" not in data:
                    return data
        return self._stdlib_dumps(value)

    def _stdlib_dumps(self, value: Any) -> bytes:
        try:
            text = self._encoder.encode(value)
            data = text.encode("utf-8")
        except SerializationError:
            raise
        except ValueError as exc:  # NaN / infinity, or a reference cycle
            raise SerializationError(f"value cannot be encoded as JSON: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise SerializationError(
                "value holds a string with a lone surrogate, which JSON cannot carry"
            ) from exc
        except RecursionError as exc:
            raise SerializationError("value is nested too deeply to encode as JSON") from exc
        if _HAVE_ORJSON and _LONG_NUMBER.search(text):
            # Leading whitespace is valid JSON; loads() takes it as "use the stdlib".
            return b" " + data
        return data

    if _HAVE_ORJSON:

        def loads(self, data: bytes) -> Any:
            if data[:1] != b" ":
                try:
                    return _orjson.loads(data)
                except _orjson.JSONDecodeError:
                    pass  # fall through: the stdlib gives the authoritative answer
            return _stdlib_loads(data)

    else:  # pragma: no cover - exercised by the import_minimal nox session

        def loads(self, data: bytes) -> Any:
            return _stdlib_loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


def _stdlib_loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DeserializationError(f"stored bytes are not valid JSON: {exc}") from exc


_PICKLE_CONTEXT = b"chenu-cache/pickle/v1\x00"
_MIN_SECRET = 16


class PickleSerializer(Serializer):
    """Pickle, signed with HMAC-SHA256: for Python objects JSON cannot carry.

    Requires a secret of at least 16 bytes shared by every process that reads the
    cache. Data that is unsigned or whose signature does not verify is refused with
    `SignatureError` before `pickle` sees it, so a
    value planted in Redis by anyone without the secret is never executed. Signatures
    are compared in constant time; the algorithm is fixed, never taken from the data.
    """

    format_id = 0x50  # "P"
    _MAC_SIZE = 32

    def __init__(self, secret: bytes | str, *, protocol: int = 5) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if not isinstance(key, bytes) or len(key) < _MIN_SECRET:
            raise ConfigurationError(
                f"PickleSerializer needs a secret of at least {_MIN_SECRET} bytes"
            )
        self._key = key
        self._protocol = protocol

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _PICKLE_CONTEXT + payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        try:
            payload = pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(
                f"{type(value).__module__}.{type(value).__qualname__} cannot be pickled: {exc}"
            ) from exc
        return self._mac(payload) + payload

    def loads(self, data: bytes) -> Any:
        mac, payload = data[: self._MAC_SIZE], data[self._MAC_SIZE :]
        if len(mac) != self._MAC_SIZE or not hmac.compare_digest(mac, self._mac(payload)):
            raise SignatureError("pickled entry is unsigned or its signature does not verify")
        try:
            return pickle.loads(payload)  # noqa: S301 - signature verified above
        except Exception as exc:  # a signed pickle can still fail (class moved, say)
            raise DeserializationError(f"signed pickle could not be loaded: {exc}") from exc

    def __repr__(self) -> str:
        return "PickleSerializer(secret=<hidden>)"


class Codec:
    """Serializer plus header, compression and size limit: what backends store.

    ``compress_threshold``: serialized values longer than this many bytes are zlib
    compressed (kept only when smaller); ``None`` turns compression off.
    ``max_value_size``: serialized values longer than this are refused with
    `ValueTooLargeError`; it also bounds decompression.
    """

    def __init__(
        self,
        serializer: Serializer | None = None,
        *,
        compress_threshold: int | None = None,
        compress_level: int = 6,
        max_value_size: int | None = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        fmt = self.serializer.format_id
        if not isinstance(fmt, int) or not 0 <= fmt <= 255:
            raise ConfigurationError(f"serializer format_id must be 0-255, got {fmt!r}")
        if compress_threshold is not None and compress_threshold < 0:
            raise ConfigurationError("compress_threshold must be >= 0 or None")
        if max_value_size is not None and max_value_size <= 0:
            raise ConfigurationError("max_value_size must be > 0 or None")
        self.compress_threshold = compress_threshold
        self.compress_level = compress_level
        self.max_value_size = max_value_size
        self._plain = bytes((_MAGIC, fmt, 0))
        self._zlib = bytes((_MAGIC, fmt, _FLAG_ZLIB))
        self._dumps = self.serializer.dumps
        self._loads = self.serializer.loads

    def encode(self, value: Any) -> bytes:
        """Serialize ``value`` into stored bytes, or raise before anything is written."""
        payload = self._dumps(value)
        size = len(payload)
        if self.max_value_size is not None and size > self.max_value_size:
            raise ValueTooLargeError(
                f"{type(value).__name__} value serializes to {size} bytes; "
                f"max_value_size is {self.max_value_size}"
            )
        if self.compress_threshold is not None and size > self.compress_threshold:
            packed = zlib.compress(payload, self.compress_level)
            if len(packed) < size:
                return self._zlib + packed
        return self._plain + payload

    def decode(self, data: bytes) -> Any:
        """Deserialize stored bytes; raise `DeserializationError` on foreign data."""
        head = data[:3]
        if head == self._plain:
            return self._loads(data[3:])
        if head == self._zlib:
            return self._loads(self._inflate(data[3:]))
        raise DeserializationError(self._describe_foreign(head))

    def _inflate(self, packed: bytes) -> bytes:
        limit = self.max_value_size or 0
        inflater = zlib.decompressobj()
        try:
            payload = inflater.decompress(packed, limit)
        except zlib.error as exc:
            raise DeserializationError(f"compressed entry is corrupt: {exc}") from exc
        if inflater.unconsumed_tail:
            raise DeserializationError(
                f"compressed entry inflates beyond max_value_size ({self.max_value_size})"
            )
        return payload

    def _describe_foreign(self, head: bytes) -> str:
        if len(head) == 3 and head[0] == _MAGIC:
            return (
                f"entry was written with format 0x{head[1]:02x} (flags 0x{head[2]:02x}); "
                f"this cache reads format 0x{self.serializer.format_id:02x}"
            )
        return "entry was not written by chenu-cache (unknown header)"

    def __repr__(self) -> str:
        return (
            f"Codec({self.serializer!r}, compress_threshold={self.compress_threshold}, "
            f"max_value_size={self.max_value_size})"
        )
