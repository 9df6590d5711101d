"""The namespace registry: which namespaces have which TTL, and TTL resolution."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import timedelta
from types import MappingProxyType

from ._keys import validate_namespace
from ._types import TTL, NoExpiry
from .exceptions import CacheTypeError, InvalidTTLError

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_NAMESPACES",
    "DEFAULT_TTL",
    "NamespaceRegistry",
    "to_seconds",
]

DEFAULT_TTL = 3600.0
"""Seconds an entry lives when neither the call nor its namespace says otherwise."""

DEFAULT_MAX_TTL = 366 * 24 * 3600.0
"""The longest finite TTL accepted (a year); longer ones are almost always unit mistakes."""

_MINUTE = 60.0
_HOUR = 3600.0

DEFAULT_NAMESPACES: Mapping[str, float] = MappingProxyType(
    {
        "user": _HOUR,
        "agent": 30 * _MINUTE,
        "sphere": _HOUR,
        "project": _HOUR,
        "session": 24 * _HOUR,
        "i18n": 24 * _HOUR,
        "settings": _HOUR,
        "search": 5 * _MINUTE,
        "analytics": 10 * _MINUTE,
        "governance": _MINUTE,
    }
)
"""The namespaces every cache knows from the start, with their TTLs in seconds."""


def to_seconds(ttl: TTL, *, max_ttl: float = DEFAULT_MAX_TTL) -> float | NoExpiry | None:
    """Validate a TTL: seconds as ``float``, ``NO_EXPIRY``, or ``None`` ("not given")."""
    kind = type(ttl)
    if (kind is int or kind is float) and 0 < ttl <= max_ttl:  # type: ignore[operator]
        return float(ttl)  # type: ignore[arg-type]  # the common case, checked cheaply
    if ttl is None or isinstance(ttl, NoExpiry):
        return ttl
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise CacheTypeError(
            f"ttl must be seconds (int or float), a timedelta, NO_EXPIRY or None, "
            f"not {type(ttl).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidTTLError(
            f"ttl must be a positive, finite number of seconds, got {ttl!r}; "
            "pass NO_EXPIRY for an entry that never expires"
        )
    if seconds > max_ttl:
        raise InvalidTTLError(
            f"ttl of {seconds:g} s is longer than the maximum of {max_ttl:g} s; "
            "pass NO_EXPIRY for an entry that never expires"
        )
    return seconds


class NamespaceRegistry:
    """Namespaces and their TTLs; unknown namespaces are allowed and get the default.

    ``ttl_for(None)`` and ``ttl_for(unknown)`` give the instance default. A TTL of
    ``None`` in the registry means entries of that namespace never expire.
    """

    def __init__(
        self,
        namespaces: Mapping[str, TTL] | None = None,
        *,
        default_ttl: TTL = DEFAULT_TTL,
        include_defaults: bool = True,
        max_ttl: float = DEFAULT_MAX_TTL,
    ) -> None:
        self.max_ttl = max_ttl
        self.default_ttl = self._seconds(default_ttl)
        self._ttls: dict[str, float | None] = dict(DEFAULT_NAMESPACES) if include_defaults else {}
        for name, ttl in (namespaces or {}).items():
            self.register(name, ttl)

    def _seconds(self, ttl: TTL) -> float | None:
        seconds = to_seconds(ttl, max_ttl=self.max_ttl)
        if seconds is None or isinstance(seconds, NoExpiry):
            return None
        return seconds

    def register(self, name: str, ttl: TTL) -> None:
        """Add or change a namespace; ``ttl`` of ``None`` or ``NO_EXPIRY``: never expires."""
        self._ttls[validate_namespace(name)] = self._seconds(ttl)

    def ttl_for(self, namespace: str | None) -> float | None:
        """Seconds to live for entries of ``namespace``; ``None`` means no expiry."""
        if namespace is None:
            return self.default_ttl
        return self._ttls.get(namespace, self.default_ttl)

    def resolve(self, ttl: TTL, namespace: str | None) -> float | None:
        """The call's TTL, else the namespace's, else the default; ``None``: no expiry."""
        seconds = to_seconds(ttl, max_ttl=self.max_ttl)
        if seconds is None:
            return self.ttl_for(namespace)
        if isinstance(seconds, NoExpiry):
            return None
        return seconds

    def as_dict(self) -> dict[str, float | None]:
        """A copy of the registry: namespace to TTL in seconds (``None``: no expiry)."""
        return dict(self._ttls)

    def __contains__(self, name: object) -> bool:
        return name in self._ttls

    def __iter__(self) -> Iterator[str]:
        return iter(self._ttls)

    def __len__(self) -> int:
        return len(self._ttls)

    def __repr__(self) -> str:
        return f"NamespaceRegistry({self._ttls!r}, default_ttl={self.default_ttl})"
