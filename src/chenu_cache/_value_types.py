"""What a caller's type makes of stored JSON: values that come back as themselves.

Stored bytes are plain JSON; the type travels in the caller's annotation or ``type=``
(SPEC §11). `value_type()` turns a type into a `ValueType` once and remembers it:
pydantic's ``TypeAdapter`` when pydantic is installed (imported on first need, never
at import time), else the standard-library conversions below. Types JSON already
gives back as they are (``Any``, ``dict``, ``list[Any]``, ...) need no conversion:
`value_type()` returns ``None`` for them, and their hits take the untyped path.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union, get_args, get_origin
from uuid import UUID

from .exceptions import CacheTypeError

__all__ = ["TypeMismatch", "ValueType", "return_type", "value_type"]

logger = logging.getLogger("chenu_cache")

_MAX_TYPES = 1024  # remembered types; a program has a bounded number of them


class TypeMismatch(ValueError):
    """Stored data that does not fit the requested type (pydantic's errors are ValueErrors too)."""


_Convert = Callable[[Any], Any]


class ValueType:
    """One requested type: ``parse`` reads JSON bytes into it, ``convert`` JSON data.

    Both raise a ``ValueError`` (`TypeMismatch`, or pydantic's ``ValidationError``)
    when the data does not fit, which the cache turns into a counted miss.
    """

    __slots__ = ("convert", "name", "parse")

    def __init__(self, name: str, parse: Callable[[bytes], Any], convert: _Convert) -> None:
        self.name = name
        self.parse = parse
        self.convert = convert

    def __repr__(self) -> str:
        return f"ValueType({self.name})"


def _name(tp: object) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


_JSON_TYPES: tuple[object, ...] = (Any, object, dict, list)


def _passes_through(tp: object) -> bool:
    """Whether JSON data already is this type: then there is nothing to convert or check."""
    if tp in _JSON_TYPES:
        return True
    origin, args = get_origin(tp), get_args(tp)
    if origin is list or origin is Sequence:
        return len(args) == 1 and args[0] in (Any, object)
    if origin is dict or origin is Mapping:
        return len(args) == 2 and args[0] is str and args[1] in (Any, object)
    return False


_known: dict[object, ValueType | None] = {}
_pydantic_checked = False
_type_adapter: Any = None


def _pydantic_adapter() -> Any:
    """pydantic's ``TypeAdapter``, or ``None`` when pydantic is not installed."""
    global _pydantic_checked, _type_adapter
    if not _pydantic_checked:
        _pydantic_checked = True
        if importlib.util.find_spec("pydantic") is not None:
            from pydantic import TypeAdapter

            _type_adapter = TypeAdapter
    return _type_adapter


def value_type(tp: object) -> ValueType | None:
    """The `ValueType` of ``tp`` (built once), or ``None`` when JSON already gives it.

    Raises `CacheTypeError` for a type neither pydantic (when installed) nor the
    standard-library conversions can build from JSON.
    """
    if type(tp) is ValueType:
        return tp
    try:
        return _known[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable (Annotated with a list, say): built every time
        return _build(tp)
    built = _build(tp)
    if len(_known) >= _MAX_TYPES:
        _known.clear()
    _known[tp] = built
    return built


def _build(tp: object) -> ValueType | None:
    if _passes_through(tp):
        return None
    adapter_class = _pydantic_adapter()
    if adapter_class is not None:
        try:
            adapter = adapter_class(tp)
        except Exception as exc:  # pydantic's schema errors have no common base
            raise CacheTypeError(f"cannot cache values of type {_name(tp)}: {exc}") from exc
        # The validator itself, not the adapter's wrapper: one Python frame less per hit.
        validator = adapter.validator
        return ValueType(_name(tp), validator.validate_json, validator.validate_python)
    convert = _converter(tp)
    loads = _json_loads()
    return ValueType(_name(tp), lambda data: convert(loads(data)), convert)


def _json_loads() -> Callable[[bytes], Any]:
    from .serializers import JsonSerializer

    return JsonSerializer().loads


def return_type(func: Callable[..., Any]) -> ValueType | None:
    """The `ValueType` of ``func``'s return annotation (``None``: JSON types will do).

    Resolved with ``typing.get_type_hints``, so string annotations and forward
    references work once their names exist. An annotation that cannot be resolved or
    built from JSON is logged (once per function: it is resolved once) and gives
    ``None``: values come back as JSON types, and ``type=`` on the decorator says
    what to build.
    """
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError, or anything a string annotation raises
        logger.warning(
            "chenu_cache: the return annotation of %s cannot be resolved (%s); its cached "
            "values come back as JSON types (pass type= to the decorator)",
            getattr(func, "__qualname__", func),
            exc,
        )
        return None
    if "return" not in hints:
        return None
    try:
        return value_type(hints["return"])
    except CacheTypeError as exc:
        logger.warning(
            "chenu_cache: %s; the values of %s come back as JSON types (pass type= to "
            "the decorator)",
            exc,
            getattr(func, "__qualname__", func),
        )
        return None


# -- the standard-library conversions (without pydantic) ------------------------------


def _mismatch(tp: object, data: object) -> TypeMismatch:
    return TypeMismatch(f"{type(data).__name__} data does not fit {_name(tp)}")


def _exact(kind: type) -> _Convert:
    def convert(data: Any) -> Any:
        if type(data) is not kind:
            raise _mismatch(kind, data)
        return data

    return convert


def _to_float(data: Any) -> float:
    if type(data) is float:
        return data
    if type(data) is int:
        return float(data)
    raise _mismatch(float, data)


def _from_text(kind: type, parse: Callable[[str], Any]) -> _Convert:
    def convert(data: Any) -> Any:
        if type(data) is not str:
            if isinstance(data, kind):  # already built (a pickling serializer's)
                return data
            raise _mismatch(kind, data)
        try:
            return parse(data)
        except (ValueError, InvalidOperation) as exc:
            raise TypeMismatch(f"{data!r} is not a {kind.__name__}: {exc}") from None

    return convert


def _to_decimal(data: Any) -> Decimal:
    if type(data) in (int, float):
        return Decimal(str(data))
    return _from_text(Decimal, Decimal)(data)  # type: ignore[no-any-return]


_SCALARS: dict[object, _Convert] = {
    type(None): _exact(type(None)),
    None: _exact(type(None)),
    bool: _exact(bool),
    int: _exact(int),
    str: _exact(str),
    float: _to_float,
    datetime: _from_text(datetime, datetime.fromisoformat),
    date: _from_text(date, date.fromisoformat),
    time: _from_text(time, time.fromisoformat),
    UUID: _from_text(UUID, UUID),
    Decimal: _to_decimal,
}


def _converter(tp: object) -> _Convert:
    """A function building ``tp`` from JSON data; `CacheTypeError` if there is none."""
    if _passes_through(tp):
        return lambda data: data
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    supertype = getattr(tp, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _converter(supertype)
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        return _converter(args[0])
    if origin is Union or origin is types.UnionType:
        return _union(tp, [_converter(arg) for arg in args])
    if origin is Literal:
        return _literal(tp, args)
    if tp in _SEQUENCES or origin in _SEQUENCES:
        return _sequence(tp, origin or tp, args)
    if origin in (dict, Mapping):
        return _mapping(tp, args)
    if typing.is_typeddict(tp):
        return _exact(dict)
    raise CacheTypeError(
        f"cannot cache values of type {_name(tp)} without pydantic: the standard-library "
        "conversions cover JSON types, datetime/date/time, UUID, Decimal, Enum, "
        "dataclasses, and tuples, sets, lists, dicts, Optional and Literal of those"
    )


def _enum(tp: type[enum.Enum]) -> _Convert:
    def convert(data: Any) -> Any:
        try:
            return tp(data)
        except ValueError:
            raise _mismatch(tp, data) from None

    return convert


def _dataclass(tp: type) -> _Convert:
    hints = typing.get_type_hints(tp, include_extras=True)
    fields = [
        (f.name, _converter(hints.get(f.name, Any)))
        for f in dataclasses.fields(tp)
        if f.init  # the others are the class's to compute
    ]

    def convert(data: Any) -> Any:
        if type(data) is not dict:
            if isinstance(data, tp):
                return data
            raise _mismatch(tp, data)
        try:
            return tp(**{name: build(data[name]) for name, build in fields if name in data})
        except TypeError as exc:  # a required field is missing
            raise TypeMismatch(f"data does not fit {tp.__qualname__}: {exc}") from None

    return convert


def _union(tp: object, options: list[_Convert]) -> _Convert:
    def convert(data: Any) -> Any:
        for option in options:
            try:
                return option(data)
            except ValueError:  # noqa: PERF203 - the alternatives are tried in turn
                continue
        raise _mismatch(tp, data)

    return convert


def _literal(tp: object, allowed: tuple[object, ...]) -> _Convert:
    def convert(data: Any) -> Any:
        for value in allowed:
            if type(value) is type(data) and value == data:
                return value
        raise _mismatch(tp, data)

    return convert


_SEQUENCES: dict[object, Callable[[Any], Any]] = {
    list: list,
    Sequence: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    AbstractSet: frozenset,
}


def _sequence(tp: object, kind: object, args: tuple[Any, ...]) -> _Convert:
    if kind is tuple and args and args[-1] is not Ellipsis:
        items = [] if args == ((),) else [_converter(arg) for arg in args]  # tuple[()]

        def fixed(data: Any) -> Any:
            if not isinstance(data, (list, tuple)) or len(data) != len(items):
                raise _mismatch(tp, data)
            return tuple(each(value) for each, value in zip(items, data, strict=True))

        return fixed
    build = _SEQUENCES[kind]
    each = _converter(args[0] if args else Any)

    def convert(data: Any) -> Any:
        if not isinstance(data, (list, tuple, set, frozenset)):
            raise _mismatch(tp, data)
        return build(each(value) for value in data)

    return convert


def _mapping(tp: object, args: tuple[Any, ...]) -> _Convert:
    key = _key_converter(args[0]) if args else str
    value = _converter(args[1]) if len(args) > 1 else _converter(Any)

    def convert(data: Any) -> Any:
        if type(data) is not dict:
            raise _mismatch(tp, data)
        return {key(k): value(v) for k, v in data.items()}

    return convert


def _key_converter(tp: object) -> _Convert:
    """JSON keys are strings: a dict[int, ...] written as {"1": ...} reads back with ints."""
    if tp is int:
        return _from_text(int, int)
    if tp is float:
        return _from_text(float, float)
    if tp is str or tp in (Any, object):
        return lambda k: k
    return _converter(tp)  # Enum, UUID, Literal, ...: built from the key's text
