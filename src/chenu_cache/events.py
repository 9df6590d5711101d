"""Invalidation events (SPEC §16): what a cache with ``events=True`` tells the world.

Every invalidation such a `FallbackCache` makes (a key, several keys, a pattern, a
namespace, ``clear()``, tags) is appended to a bounded Redis Stream under its prefix,
and ``cache.events()`` iterates over them: from now, or from an event id. A reader that
asks from an id the stream no longer holds first gets a ``reset`` event: treat every
cached thing as stale. Delivery is at least once within the stream's retention.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._keys import namespace_of

__all__ = ["EVENT_KINDS", "CacheEvent"]

EVENT_KINDS = ("key", "keys", "pattern", "namespace", "clear", "tags", "reset")
"""What an event can say was invalidated; ``reset`` means "everything may be stale"."""


@dataclass(frozen=True)
class CacheEvent:
    """One invalidation, as the stream holds it.

    ``id`` is the stream's id (``"1717000000000-0"``), increasing; ``kind`` one of
    `EVENT_KINDS`. ``keys`` are logical keys (namespace included) for ``key``/``keys``;
    ``pattern`` the Redis glob for ``pattern``; ``namespace`` for ``namespace``;
    ``tags`` for ``tags``. ``time`` is when the invalidation was made (seconds since the
    epoch), ``origin`` an id of the cache instance that made it, and ``replayed`` says
    it was made during an outage and published when Redis came back.
    """

    id: str
    kind: str
    keys: tuple[str, ...] = ()
    pattern: str | None = None
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    time: float = 0.0
    origin: str = ""
    replayed: bool = False

    def touches(self, namespaces: Iterable[str]) -> bool:
        """Whether the event concerns one of ``namespaces`` (a ``clear`` and a ``reset``
        concern all of them; a tag event none, since tags are not namespaces)."""
        wanted = set(namespaces)
        if self.kind in ("clear", "reset"):
            return True
        if self.kind == "namespace":
            return self.namespace in wanted
        if self.kind in ("key", "keys"):
            return any(namespace_of(key) in wanted for key in self.keys)
        if self.kind == "pattern" and self.pattern is not None:
            head, sep, _ = self.pattern.partition(":")
            if sep and not any(c in head for c in "*?[\\"):
                return head in wanted
            return True  # a pattern over namespaces: it may concern any of them
        return False

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served by ``GET /cache/events`` (``id`` travels as SSE's ``id:``)."""
        found: dict[str, Any] = {"kind": self.kind, "time": self.time}
        if self.keys:
            found["keys"] = list(self.keys)
        if self.pattern is not None:
            found["pattern"] = self.pattern
        if self.namespace is not None:
            found["namespace"] = self.namespace
        if self.tags:
            found["tags"] = list(self.tags)
        if self.replayed:
            found["replayed"] = True
        found["origin"] = self.origin
        return found

    def encode(self) -> bytes:
        """The bytes stored in the stream (one field): the JSON of `to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, event_id: str, data: bytes) -> CacheEvent:
        """An event from the stream; malformed data is a ``reset`` (never an error)."""
        try:
            raw = json.loads(data)
            kind = raw["kind"]
            if kind not in EVENT_KINDS:
                raise ValueError(kind)
            return cls(
                id=event_id,
                kind=kind,
                keys=tuple(raw.get("keys", ())),
                pattern=raw.get("pattern"),
                namespace=raw.get("namespace"),
                tags=tuple(raw.get("tags", ())),
                time=float(raw.get("time", 0.0)),
                origin=str(raw.get("origin", "")),
                replayed=bool(raw.get("replayed", False)),
            )
        except (ValueError, KeyError, TypeError):
            return cls(id=event_id, kind="reset")
