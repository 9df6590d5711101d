"""Stored bytes to values, written once: the plain fast path, the freshness envelope,
the caller's type (SPEC §11), and what cannot be read (undecodable, refused by the
server, not fitting the type) counted as a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ._fences import MARKER_MAGIC
from ._freshness import ENVELOPE_MAGIC, ENVELOPE_SIZE, peek
from ._tags import TAG_MAGIC, current, split, stamps_of
from ._value_types import ValueType
from .exceptions import CommandRefusedError, DeserializationError
from .serializers import Codec, JsonSerializer
from .stats import Counters

__all__ = ["ABSENT", "TAGGED", "Decoder"]

logger = logging.getLogger("chenu_cache")

ABSENT: Any = object()
"""What `Decoder.value` gives for bytes that hold no value now: expired, a load's claim,
unreadable, or not of the requested type."""

TAGGED: Any = object()
"""What `Decoder.value` gives for a tagged entry whose tag versions were not checked:
the caller checks them (an await) and decodes again with ``checked``."""


class Decoder:
    """Decodes entries for one cache, and counts and logs (once) those it cannot read."""

    def __init__(
        self,
        codec: Codec,
        counters: Counters,
        clock: Callable[[], float],
        versions: Callable[[Sequence[str]], Awaitable[list[bytes | None]]],
    ) -> None:
        self.codec = codec
        self.versions = versions
        """The current versions of tags, through the cache's route (SPEC §14)."""
        self.counters = counters
        self.clock = clock
        # The plain header and the serializer's loads: the common entry (uncompressed,
        # no envelope) decodes without a call through the codec.
        self.plain = codec.encode(None)[:3]
        self.loads = codec.serializer.loads
        # JSON bytes go straight to a type's parser (pydantic reads them in one pass).
        self.json = isinstance(codec.serializer, JsonSerializer)
        # The bytes a nowait peek (the decorator's first look) just counted as a bad
        # entry: the read that follows it in the same call must not count them again.
        self.peeked: bytes | None = None

    def value(
        self,
        key: str,
        data: bytes,
        refresh_after: float | timedelta | None = None,
        kind: ValueType | None = None,
        reread: bool = False,
        checked: bool = False,
    ) -> Any:
        """The value stored in ``data`` (of type ``kind`` when given), or `ABSENT`.

        `ABSENT` when the entry is past its logical TTL (kept only to be served if its
        loader fails), when ``refresh_after`` is given and the entry is due for a
        refresh (so that the loader starts it), when it is a load's claim, or when it
        cannot be decoded or does not fit ``kind`` (both counted, once per lookup:
        ``reread`` says this was a first look, and a read of the same lookup follows).
        """
        try:
            if data[:3] == self.plain:
                if kind is None:
                    return self.loads(data[3:])
                if self.json:  # pydantic reads the JSON bytes in one pass
                    return kind.parse(data[3:])
                return kind.convert(self.loads(data[3:]))
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
                if data[ENVELOPE_SIZE : ENVELOPE_SIZE + 1] == b"\xc4" and not checked:
                    return TAGGED
                return self.decode(data[ENVELOPE_SIZE:], kind)
            first = data[0]
            if first == MARKER_MAGIC:
                return ABSENT
            if first == TAG_MAGIC and not checked:
                return TAGGED
            return self.decode(data, kind)
        except DeserializationError as exc:
            self.undecodable(key, exc, data)
        except ValueError as exc:  # pydantic's ValidationError, our TypeMismatch
            if kind is None:
                raise
            self.mismatch(key, kind, exc, data)
        if reread:
            self.peeked = data
        return ABSENT

    async def tags_hold(self, data: bytes, known: Mapping[str, bytes | None] | None = None) -> bool:
        """Whether a stored entry's tags are at the versions it was loaded with (an
        untagged entry: yes); an entry that is stale by a tag is counted. ``known``:
        versions read with the entry, used when they cover its tags."""
        stamps = stamps_of(data)
        if stamps is None:
            return True
        tags = [tag for tag, _ in stamps]
        if known is not None and all(tag in known for tag in tags):
            versions = [known[tag] for tag in tags]
        else:
            versions = await self.versions(tags)
        if current(stamps, versions):
            return True
        if not self._recounted(data):
            self.counters.stale_by_tag += 1
        return False

    async def checked(
        self,
        key: str,
        data: bytes,
        kind: ValueType | None,
        known: Mapping[str, bytes | None] | None = None,
    ) -> Any:
        """The value of a tagged entry (`TAGGED` from `value`) if its tags hold, else
        `ABSENT`."""
        if not await self.tags_hold(data, known):
            return ABSENT
        return self.value(key, data, None, kind, False, True)

    def checked_now(
        self,
        key: str,
        data: bytes,
        kind: ValueType | None,
        versions: Callable[[Sequence[str]], list[bytes | None] | None] | None,
        *,
        last: bool = False,
    ) -> Any:
        """`checked`, when the tags' versions can be had without an await (the memory
        tier, the near cache when it holds them all); `TAGGED` when they cannot. Unless
        it is the ``last`` look of its lookup, a read of the same lookup follows it, and
        a stale entry is counted once, as with `reread`."""
        if versions is None:
            return TAGGED
        stamps = stamps_of(data)
        found = versions([tag for tag, _ in stamps]) if stamps is not None else []
        if found is None:
            return TAGGED
        if stamps is not None and current(stamps, found):
            return self.value(key, data, None, kind, False, True)
        self.counters.stale_by_tag += 1
        if not last:
            self.peeked = data
        return ABSENT

    def decode(self, data: bytes, kind: ValueType | None) -> Any:
        """The codec's bytes (behind a tag block already checked, if any) as a value of
        ``kind``; raises what decoding raises."""
        if data[:1] == b"\xc4":
            data = split(data)
        if kind is not None and self.json and data[:3] == self.plain:
            return kind.parse(data[3:])
        value = self.codec.decode(data)
        return value if kind is None else kind.convert(value)

    def _recounted(self, data: bytes | None) -> bool:
        """Whether ``data`` is what the lookup's own peek just counted."""
        peeked, self.peeked = self.peeked, None
        return data is not None and data is peeked

    def undecodable(self, key: str, exc: DeserializationError, data: bytes | None = None) -> None:
        """An entry that cannot be decoded: a miss, counted, logged once at WARNING."""
        if self._recounted(data):
            return
        counters = self.counters
        counters.decode_errors += 1
        level = logging.WARNING if counters.decode_errors == 1 else logging.DEBUG
        logger.log(
            level, "chenu_cache: entry %r cannot be decoded (%s); treated as a miss", key, exc
        )

    def mismatch(
        self, key: str, kind: ValueType, exc: ValueError, data: bytes | None = None
    ) -> None:
        """An entry that does not fit the requested type (a model changed between
        deploys): a miss, counted, logged once at WARNING."""
        if self._recounted(data):
            return
        counters = self.counters
        counters.type_errors += 1
        level = logging.WARNING if counters.type_errors == 1 else logging.DEBUG
        logger.log(
            level,
            "chenu_cache: entry %r does not fit %s (%s); treated as a miss",
            key,
            kind.name,
            str(exc).splitlines()[0],
        )

    def refused(self, key: str, exc: CommandRefusedError) -> None:
        """A read the server refused (``WRONGTYPE``, say): a miss, counted, logged once."""
        counters = self.counters
        counters.command_errors += 1
        level = logging.WARNING if counters.command_errors == 1 else logging.DEBUG
        logger.log(level, "chenu_cache: reading %r was refused (%s); treated as a miss", key, exc)
