"""Stored bytes to values, written once: the plain fast path, the freshness envelope,
and what cannot be read (undecodable, refused by the server) counted as a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ._freshness import ENVELOPE_MAGIC, ENVELOPE_SIZE, peek
from .exceptions import CommandRefusedError, DeserializationError
from .serializers import Codec
from .stats import Counters

__all__ = ["ABSENT", "Decoder"]

logger = logging.getLogger("chenu_cache")

ABSENT: Any = object()
"""What `Decoder.value` gives for bytes that hold no value now: expired, or unreadable."""


class Decoder:
    """Decodes entries for one cache, and counts and logs (once) those it cannot read."""

    def __init__(self, codec: Codec, counters: Counters, clock: Callable[[], float]) -> None:
        self.codec = codec
        self.counters = counters
        self.clock = clock
        # The plain header and the serializer's loads: the common entry (uncompressed,
        # no envelope) decodes without a call through the codec.
        self.plain = codec.encode(None)[:3]
        self.loads = codec.serializer.loads

    def value(self, key: str, data: bytes, refresh_after: float | timedelta | None = None) -> Any:
        """The value stored in ``data``, or `ABSENT`.

        `ABSENT` when the entry is past its logical TTL (kept only to be served if its
        loader fails), when ``refresh_after`` is given and the entry is due for a
        refresh (so that the loader starts it), or when it cannot be decoded (counted).
        """
        try:
            if data[:3] == self.plain:
                return self.loads(data[3:])
            if data[0] == ENVELOPE_MAGIC and len(data) >= ENVELOPE_SIZE:
                _, written_at, ttl, _ = peek(data)
                age = self.clock() - written_at
                if ttl and age >= ttl:
                    return ABSENT
                if refresh_after is not None:
                    if type(refresh_after) is timedelta:
                        refresh_after = refresh_after.total_seconds()
                    if age >= refresh_after:  # type: ignore[operator]
                        return ABSENT
                if data[ENVELOPE_SIZE : ENVELOPE_SIZE + 3] == self.plain:
                    return self.loads(data[ENVELOPE_SIZE + 3 :])
                return self.codec.decode(data[ENVELOPE_SIZE:])
            return self.codec.decode(data)
        except DeserializationError as exc:
            self.undecodable(key, exc)
            return ABSENT

    def undecodable(self, key: str, exc: DeserializationError) -> None:
        """An entry that cannot be decoded: a miss, counted, logged once at WARNING."""
        counters = self.counters
        counters.decode_errors += 1
        level = logging.WARNING if counters.decode_errors == 1 else logging.DEBUG
        logger.log(
            level, "chenu_cache: entry %r cannot be decoded (%s); treated as a miss", key, exc
        )

    def refused(self, key: str, exc: CommandRefusedError) -> None:
        """A read the server refused (``WRONGTYPE``, say): a miss, counted, logged once."""
        counters = self.counters
        counters.command_errors += 1
        level = logging.WARNING if counters.command_errors == 1 else logging.DEBUG
        logger.log(level, "chenu_cache: reading %r was refused (%s); treated as a miss", key, exc)
