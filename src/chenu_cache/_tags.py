"""Versioned tags (SPEC §14): which entries an ``invalidate_tags`` call reaches.

Each tag has a version, kept by the backend (a Redis key per tag; a dict in memory). An
entry written with tags carries the versions its tags had *before* its value was
loaded; a read compares them with the current ones, and any difference makes the entry
a miss. ``invalidate_tags`` gives each tag a new random version: one command per tag,
whatever the number of entries, nothing to sweep, nothing left unreachable. A load that
a tag invalidation overtook carries the old version, so its entry is stale the moment
it is written (the fence of SPEC §12, for tags).

Layout of a tagged entry: ``0xC4``, the number of tags (one byte), then per tag its
name and version, each as a two-byte length and the UTF-8 bytes; then the codec's bytes.
A freshness envelope, when there is one, stays in front of it all, so the load's fence
and the freshness checks read the entry as before.
"""

from __future__ import annotations

import string
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._freshness import ENVELOPE_MAGIC, ENVELOPE_SIZE
from .exceptions import CacheTypeError, InvalidKeyError

__all__ = [
    "MAX_TAGS",
    "TAG_MAGIC",
    "Stamps",
    "TagTemplates",
    "current",
    "split",
    "stamp",
    "stamps_of",
    "validate_tags",
    "with_stamps",
]

TAG_MAGIC = 0xC4
"""First byte of a tag block (the codec's header is 0xC1, envelopes 0xC2, claims 0xC3)."""

MAX_TAGS = 32
MAX_TAG_LENGTH = 256
_LENGTH = struct.Struct(">H")

Stamps = Sequence[tuple[str, bytes]]
"""A tagged entry's tags with the versions they had when its load started."""


def validate_tags(tags: object) -> tuple[str, ...]:
    """Tags as given to ``set``/``get_or_set``/``invalidate_tags``: checked, deduplicated."""
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise CacheTypeError("tags must be a list or tuple of strings, not a string")
    found: dict[str, None] = {}
    for tag in tags:
        if not isinstance(tag, str):
            raise CacheTypeError(f"a tag must be a str, not {type(tag).__name__}")
        if not tag or len(tag) > MAX_TAG_LENGTH or not tag.isprintable() or " " in tag:
            raise InvalidKeyError(
                f"invalid tag {tag[:40]!r}: 1-{MAX_TAG_LENGTH} printable characters, no spaces"
            )
        found[tag] = None
    if len(found) > MAX_TAGS:
        raise InvalidKeyError(f"at most {MAX_TAGS} tags per entry, got {len(found)}")
    return tuple(found)


def with_stamps(data: bytes, stamps: Stamps) -> bytes:
    """``data`` (the codec's bytes) behind a tag block."""
    parts = [bytes((TAG_MAGIC, len(stamps)))]
    for tag, version in stamps:
        name = tag.encode()
        parts += (_LENGTH.pack(len(name)), name, _LENGTH.pack(len(version)), version)
    parts.append(data)
    return b"".join(parts)


def stamp(data: bytes, tags: tuple[str, ...], versions: Sequence[bytes | None]) -> bytes:
    """``data`` behind a tag block of ``tags`` at ``versions`` (taken before the value
    was made); plain ``data`` when a version is missing (a backend without tags)."""
    if not tags or any(v is None for v in versions):
        return data
    return with_stamps(data, [(t, v) for t, v in zip(tags, versions, strict=True) if v])


def current(stamps: Stamps, versions: Sequence[bytes | None]) -> bool:
    """Whether an entry's stamps are its tags' versions now (a lost version is not)."""
    return all(
        now is not None and now == then for (_, then), now in zip(stamps, versions, strict=True)
    )


def _block_start(data: bytes) -> int:
    """Where the tag block starts in a stored entry, or -1 when it has none."""
    if data[:1] == b"\xc4":
        return 0
    if data[:1] == bytes((ENVELOPE_MAGIC,)) and data[ENVELOPE_SIZE : ENVELOPE_SIZE + 1] == b"\xc4":
        return ENVELOPE_SIZE
    return -1


def stamps_of(data: bytes) -> Stamps | None:
    """The tags and versions a stored entry carries; ``None`` for an untagged entry."""
    start = _block_start(data)
    if start < 0:
        return None
    return _parse(data, start)[0]


def _parse(data: bytes, start: int) -> tuple[list[tuple[str, bytes]], int]:
    count = data[start + 1]
    at = start + 2
    stamps = []
    for _ in range(count):
        (size,) = _LENGTH.unpack_from(data, at)
        name = data[at + 2 : at + 2 + size].decode()
        at += 2 + size
        (size,) = _LENGTH.unpack_from(data, at)
        stamps.append((name, data[at + 2 : at + 2 + size]))
        at += 2 + size
    return stamps, at


def split(data: bytes) -> bytes:
    """A tag block's payload: the codec's bytes after it (``data`` starts with the block)."""
    return data[_parse(data, 0)[1] :]


class TagTemplates:
    """The decorator's ``tags=``: templates formatted with a call's bound arguments.

    ``"user:{user_id}"``, ``"org:{user.org_id}"``, ``"item:{items[0]}"``: the names are
    the function's parameters, checked when the function is decorated.
    """

    def __init__(self, templates: object, parameters: Iterable[str]) -> None:
        if isinstance(templates, str) or not isinstance(templates, Iterable):
            raise CacheTypeError("tags= takes a list of templates, not a string")
        self.templates = tuple(templates)
        known = set(parameters)
        formatter = string.Formatter()
        for template in self.templates:
            if not isinstance(template, str):
                raise CacheTypeError(f"a tag template must be a str, not {type(template)}")
            try:
                fields = [f for _, f, _, _ in formatter.parse(template) if f is not None]
            except ValueError as exc:
                raise CacheTypeError(f"tag template {template!r}: {exc}") from None
            for field in fields:
                name = field.split(".", 1)[0].split("[", 1)[0]
                if name not in known:
                    raise CacheTypeError(
                        f"tag template {template!r} names {name!r}, which is not a "
                        f"parameter (parameters: {', '.join(sorted(known)) or 'none'})"
                    )
        self.static = all("{" not in t for t in self.templates)
        if self.static:
            validate_tags(self.templates)

    def render(self, arguments: Mapping[str, Any]) -> tuple[str, ...]:
        if self.static:
            return self.templates
        return validate_tags([t.format_map(arguments) for t in self.templates])
