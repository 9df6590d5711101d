"""Type aliases and sentinels shared across the package."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeAlias, TypeVar

T = TypeVar("T")


class NoExpiry(enum.Enum):
    """Type of `NO_EXPIRY`."""

    NO_EXPIRY = "NO_EXPIRY"

    def __repr__(self) -> str:
        return "NO_EXPIRY"


NO_EXPIRY: Final = NoExpiry.NO_EXPIRY
"""Pass as ``ttl=`` to store an entry that never expires (``None`` means "use the default")."""


class Missing(enum.Enum):
    """Type of `MISSING`: the answer for "no entry", distinct from a cached ``None``."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING

TTL: TypeAlias = float | int | timedelta | NoExpiry | None
"""A time to live: seconds (``int``/``float``), a ``timedelta``, `NO_EXPIRY`, or ``None``
for the namespace's or the instance's default."""

Loader: TypeAlias = Callable[[], T | Awaitable[T]]
"""What ``get_or_set`` calls on a miss: a sync or async callable taking no arguments."""
