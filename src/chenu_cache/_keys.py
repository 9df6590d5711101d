"""Logical keys: validation, namespaces as key prefixes.

A logical key is what callers and every listing see (``"user:123"``); backends add
their own physical prefix (``"chenu:user:123"`` in Redis). A namespace is nothing but
the part of a logical key before its first ``:``, so ``get("123", namespace="user")``
and ``get("user:123")`` name the same entry, and TTLs and statistics follow the
namespace whichever way the key was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._glob import validate_pattern
from .exceptions import CacheTypeError, InvalidKeyError, InvalidNamespaceError, ValidationError

__all__ = [
    "DEFAULT_MAX_KEY_LENGTH",
    "NAMESPACE_SEPARATOR",
    "Resolved",
    "Resolver",
    "namespace_of",
    "qualify",
    "validate_key",
    "validate_namespace",
    "validate_scan",
]

DEFAULT_MAX_KEY_LENGTH = 1024
NAMESPACE_SEPARATOR = ":"
_NAMESPACE = re.compile(r"[a-z0-9_.-]{1,64}")


def validate_key(key: object, max_length: int = DEFAULT_MAX_KEY_LENGTH) -> str:
    """Return ``key`` if it is a usable logical key, else raise a typed error."""
    if type(key) is not str:
        if isinstance(key, str):
            return validate_key(str(key), max_length)
        raise CacheTypeError(f"key must be str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if len(key) > max_length:
        raise InvalidKeyError(f"key is {len(key)} characters long; the maximum is {max_length}")
    if not key.isprintable() or " " in key:
        raise InvalidKeyError(f"key {key[:80]!r} contains whitespace or unprintable characters")
    return key


def validate_namespace(namespace: object) -> str:
    """Return ``namespace`` if it matches ``[a-z0-9_.-]{1,64}``, else raise a typed error."""
    if not isinstance(namespace, str):
        raise CacheTypeError(f"namespace must be str, not {type(namespace).__name__}")
    if _NAMESPACE.fullmatch(namespace) is None:
        raise InvalidNamespaceError(
            f"namespace {namespace[:80]!r} must match [a-z0-9_.-]{{1,64}} "
            "(lower-case letters, digits, '_', '.', '-')"
        )
    return namespace


def qualify(key: object, namespace: str | None, max_length: int = DEFAULT_MAX_KEY_LENGTH) -> str:
    """The validated logical key for ``key`` in ``namespace`` (``None``: no namespace)."""
    if namespace is None:
        return validate_key(key, max_length)
    validate_namespace(namespace)
    if type(key) is not str or not key:
        key = validate_key(key, max_length)  # raises for a non-string or empty key
    return validate_key(namespace + NAMESPACE_SEPARATOR + key, max_length)


def namespace_of(key: str) -> str | None:
    """The namespace a logical key lives in, or ``None`` when it has none."""
    head, sep, _ = key.partition(NAMESPACE_SEPARATOR)
    if sep and _NAMESPACE.fullmatch(head) is not None:
        return head
    return None


_MAX_SCAN_COUNT = 10_000
_MAX_CURSOR = 2**64  # Redis cursors are unsigned 64-bit


def validate_scan(pattern: str, cursor: int, count: int, *, max_length: int) -> None:
    """Check the arguments of one page of a scan; raise a typed error for a bad one."""
    validate_pattern(pattern, max_length=max_length)
    if type(cursor) is not int or cursor < 0:
        raise CacheTypeError("cursor must be a non-negative int")
    if cursor >= _MAX_CURSOR:
        raise ValidationError(f"cursor {cursor} is out of range: a scan cursor is below 2**64")
    if type(count) is not int or not 1 <= count <= _MAX_SCAN_COUNT:
        raise CacheTypeError(f"count must be an int between 1 and {_MAX_SCAN_COUNT}")


Resolved = tuple[str, "str | None", list[int]]
"""A validated logical key, its namespace, and that namespace's ``[hits, misses]``."""

_MAX_RESOLVED = 65_536  # remembered keys; cleared wholesale when full (cheap, rare)


class Resolver:
    """Validates keys once: a repeated key costs one dict lookup, not validation and
    namespace parsing. ``memo`` is keyed by the key, or ``(namespace, key)``; the hit
    path may read it directly."""

    def __init__(self, max_length: int, counters_of: Callable[[str | None], list[int]]) -> None:
        self.max_length = max_length
        self.counters_of = counters_of
        self.memo: dict[object, Resolved] = {}

    def resolve(self, key: object, namespace: str | None) -> Resolved:
        memo = self.memo
        if type(key) is str and (namespace is None or type(namespace) is str):
            entry = memo.get(key if namespace is None else (namespace, key))
            if entry is not None:
                return entry
        full = qualify(key, namespace, self.max_length)  # raises on bad input
        ns = namespace if isinstance(namespace, str) else namespace_of(full)
        entry = (full, ns, self.counters_of(ns))
        if len(memo) >= _MAX_RESOLVED:
            memo.clear()
        memo[key if namespace is None else (namespace, key)] = entry
        return entry
