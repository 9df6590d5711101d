"""The near cache's store, without a server: placeholders, bounds, expiry, and which
tracking link it listens to (the real link is tested in tests/integration)."""

from __future__ import annotations

import asyncio
import time

import pytest

from chenu_cache import InvalidNamespaceError, NearCacheOptions
from chenu_cache._near import NearCache, _Reports


class StubTracking:
    """Stands in for a started link: running on this loop, reporting to ``sink``."""

    def __init__(self, sink: _Reports) -> None:
        self.sink = sink
        self.up = True
        self.links = 1
        self.last_error: str | None = None
        self.loop = asyncio.get_running_loop()

    def running(self) -> bool:
        return True


def coherent(near: NearCache, seconds: float = 60.0) -> _Reports:
    reports = _Reports(near)
    near._tracking = StubTracking(reports)  # type: ignore[assignment]
    reports.tracking_up(time.monotonic() + seconds)
    return reports


async def test_a_placeholder_overtaken_by_an_invalidation_keeps_nothing() -> None:
    near = NearCache(NearCacheOptions())
    reports = coherent(near)
    token = near.begin("k")
    assert token is not None
    reports.invalidated(["k"])
    near.complete("k", token, b"old", 10.0)
    assert near.get("k") is None
    token = near.begin("k")
    assert token is not None
    near.complete("k", token, b"new", 10.0)
    assert near.get("k") == b"new"
    # A flush (lost link, FLUSHDB) drops placeholders too.
    token = near.begin("j")
    assert token is not None
    reports.invalidated(None)
    near.complete("j", token, b"x", 10.0)
    assert near.get("j") is None
    assert near.get("k") is None


async def test_bounds_in_entries_and_bytes() -> None:
    near = NearCache(NearCacheOptions(max_entries=100, max_bytes=3 * (120 + 2 + 100)))
    coherent(near)
    for i in range(5):
        token = near.begin(f"k{i}")
        near.complete(f"k{i}", token, b"v" * 100, None)
    assert list(near._entries) == ["k2", "k3", "k4"]
    assert near.statistics().bytes <= 3 * 222
    assert near.evictions == 2
    token = near.begin("big")
    near.complete("big", token, b"v" * 10_000, None)  # larger than the whole bound
    assert near.get("big") is None
    assert len(near._entries) == 3


async def test_expired_and_incoherent_copies_are_not_served() -> None:
    near = NearCache(NearCacheOptions())
    reports = coherent(near)
    token = near.begin("short")
    near.complete("short", token, b"v", 0.01)
    token = near.begin("gone")
    near.complete("gone", token, b"v", 0.0)  # expired in Redis as it was read
    assert near.get("gone") is None
    deadline = time.monotonic() + 5
    while near.get("short") is not None:
        assert time.monotonic() < deadline
    token = near.begin("long")
    near.complete("long", token, b"v", None)
    assert near.get("long") == b"v"
    reports.tracking_extended(time.monotonic() - 1)  # the heartbeat's grace ran out
    assert near.get("long") is None
    assert near.begin("other") is None  # nor is anything kept meanwhile
    reports.tracking_extended(time.monotonic() + 60)  # it answered: nothing was missed
    assert near.get("long") == b"v"
    reports.tracking_down()
    assert near.get("long") is None
    reports.tracking_extended(time.monotonic() + 60)  # too late: only tracking_up counts
    assert near.begin("long") is None


async def test_a_replaced_link_is_not_listened_to() -> None:
    near = NearCache(NearCacheOptions())
    old = coherent(near)
    token = near.begin("k")
    near.complete("k", token, b"v", None)
    current = coherent(near)
    token = near.begin("k")
    near.complete("k", token, b"v", None)
    old.tracking_down()  # the replaced link, closing: must not empty its successor's
    old.invalidated(None)
    assert near.get("k") == b"v"
    current.invalidated(["k"])
    assert near.get("k") is None


async def test_namespaces_and_patterns() -> None:
    near = NearCache(NearCacheOptions(namespaces=["user"]))
    coherent(near)
    assert near.begin("order:1") is None
    for key in ("user:1", "user:2", "user:10"):
        token = near.begin(key)
        near.complete(key, token, b"v", None)
    near.discard_matching("user:1*")
    assert sorted(near._entries) == ["user:2"]


def test_options_are_checked() -> None:
    with pytest.raises(InvalidNamespaceError):
        NearCacheOptions(namespaces=["bad namespace!"])
