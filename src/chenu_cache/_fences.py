"""Consistency fences (SPEC §12): what a load starts from, and what its write must find.

A load that finds its key absent first *claims* it: a marker (``0xC3`` and random
bytes) is stored under the key itself for the lease's time. Its write is then a
compare-and-set: it lands only if the key still holds that marker. Anything that
changed the key meanwhile, in this process or another, removed or replaced the marker:
an invalidation of the key, a pattern or namespace covering it, ``clear()`` (they all
delete the key, marker included), or a ``set()`` (which overwrites it). The marker
lives in the key, so it shares the key's Cluster slot and is reached by every pattern
that reaches the key; nothing else needs to be scanned or cleaned.

A load that starts from an entry (a refresh, a reload of an expired or unreadable one)
compares against that entry instead: its envelope header (written-at time and TTL,
unique in practice) or, for an entry without one, its whole bytes.
"""

from __future__ import annotations

import secrets

from ._freshness import ENVELOPE_MAGIC, ENVELOPE_SIZE

__all__ = ["DEFAULT_LEASE_TTL", "MARKER_MAGIC", "Basis", "basis_of", "is_marker", "new_marker"]

MARKER_MAGIC = 0xC3
"""First byte of a load's claim marker (the codec's header is ``0xC1``, envelopes ``0xC2``)."""

DEFAULT_LEASE_TTL = 60.0
"""Seconds a claim lives: a loader still running after that stores nothing."""

Basis = tuple[bytes, bool]
"""What a fenced write must find under its key: ``(expected, whole)``."""


def new_marker() -> bytes:
    return bytes((MARKER_MAGIC,)) + secrets.token_bytes(15)


def is_marker(data: bytes) -> bool:
    return data[:1] == b"\xc3"


def basis_of(seen: bytes) -> Basis:
    """What a load that started from ``seen`` (the bytes its key held) must find to write."""
    if seen[:1] == bytes((ENVELOPE_MAGIC,)) and len(seen) >= ENVELOPE_SIZE:
        return seen[:ENVELOPE_SIZE], False
    return seen, True
