"""Failover logic with a primary that fails on command: journal, backoff, replay order.

The real-server behaviour is in tests/fault; these pin down the rules themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chenu_cache import BackendUnavailableError, FallbackCache, MemoryBackend
from chenu_cache._failover import Failover, Journal
from tests.conftest import eventually


class SwitchableBackend(MemoryBackend):
    """A MemoryBackend that fails every call while ``down`` (or after ``fail_after`` calls)."""

    name = "switchable"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.deletes: list[str] = []
        self.patterns: list[str] = []
        self.fail_deletes = 0

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("down")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._check()
        await super().set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        self._check()
        return await super().delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        self._check()
        if self.fail_deletes:
            self.fail_deletes -= 1
            raise BackendUnavailableError("flaky during replay")
        self.deletes.extend(keys)
        return await super().delete_many(keys)

    async def delete_pattern(self, pattern: str) -> int:
        self._check()
        self.patterns.append(pattern)
        return await super().delete_pattern(pattern)

    async def clear(self) -> int:
        self._check()
        self.patterns.append("<clear>")
        return await super().clear()

    async def ping(self) -> float:
        self._check()
        return 0.0


def test_journal_keeps_keys_exactly_until_its_bound() -> None:
    journal = Journal(max_keys=3, max_patterns=2)
    journal.add_keys(["user:1", "user:2", "user:3", "user:3"])
    assert journal.keys == {"user:1", "user:2", "user:3"}
    assert not journal.overflowed
    journal.add_keys(["user:4", "agent:9"])
    assert journal.overflowed
    assert journal.patterns == {"user:*", "agent:*"}
    journal.add_keys(["session:1"])  # a third pattern exceeds max_patterns
    assert journal.everything


def test_journal_widens_a_key_without_namespace_to_everything() -> None:
    journal = Journal(max_keys=1)
    journal.add_keys(["a", "b"])
    assert journal.everything


def test_journal_take_and_merge() -> None:
    journal = Journal()
    journal.add_keys(["a"])
    journal.add_pattern("p:*")
    taken = journal.take()
    assert not journal
    assert taken.keys == {"a"}
    journal.add_keys(["b"])
    journal.merge(taken)
    assert journal.keys == {"a", "b"}
    assert journal.patterns == {"p:*"}


async def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    delays: list[float] = []
    primary = SwitchableBackend()
    primary.down = True

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= 8:
            primary.down = False
        await asyncio.sleep(0)

    failover = Failover(
        MemoryBackend(),
        primary,
        probe_interval=1.0,
        probe_max_interval=8.0,
        rng=lambda: 1.0,  # the top of the jitter range, so the bound is visible
        sleep=fake_sleep,
    )
    await failover.failed(BackendUnavailableError("down"))

    async def back() -> bool:
        return failover.state == "closed"

    await eventually(back)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]


async def test_jitter_spreads_between_half_and_all_of_the_delay() -> None:
    delays: list[float] = []
    primary = SwitchableBackend()

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    failover = Failover(
        MemoryBackend(), primary, probe_interval=2.0, rng=lambda: 0.0, sleep=fake_sleep
    )
    await failover.failed(BackendUnavailableError("down"))

    async def back() -> bool:
        return failover.state == "closed"

    await eventually(back)
    assert delays == [1.0]


async def test_failed_replay_stays_on_memory_and_retries() -> None:
    primary = SwitchableBackend()
    cache = FallbackCache(
        primary=primary, probe_interval=0.01, probe_max_interval=0.02, recent_window=0
    )
    await cache.set("user:1", "old")
    primary.down = True
    await cache.set("user:1", "new")  # fails over; journaled
    await cache.invalidate("user:2")
    assert cache.backend is cache.fallback
    primary.fail_deletes = 2  # the primary answers PING but the first replays fail
    primary.down = False

    async def back() -> bool:
        return cache.backend is primary

    await eventually(back)
    assert primary.fail_deletes == 0
    assert set(primary.deletes) >= {"user:1", "user:2"}
    assert await cache.get("user:1") is None  # never "old"
    await cache.close()


async def test_writes_during_replay_are_replayed_too() -> None:
    primary = SwitchableBackend()
    cache = FallbackCache(
        primary=primary, probe_interval=0.01, probe_max_interval=0.02, recent_window=0
    )
    try:
        await cache.set("a", "old")
        await cache.set("b", "old")
        primary.down = True
        await cache.set("a", "new")
        original = primary.delete_many
        wrote = False

        async def delete_many_with_a_write(keys: Sequence[str]) -> int:
            nonlocal wrote
            if not wrote:  # while the replay is in flight, a caller writes another key
                wrote = True
                await cache.set("b", "new-during-replay")
            return await original(keys)

        primary.delete_many = delete_many_with_a_write  # type: ignore[method-assign]
        primary.down = False

        async def back() -> bool:
            return cache.backend is primary

        await eventually(back)
        assert await cache.get("a") is None
        assert await cache.get("b") != "old"
    finally:
        await cache.close()


async def test_failback_converges_under_steady_writes() -> None:
    primary = SwitchableBackend()
    cache = FallbackCache(
        primary=primary, probe_interval=0.01, probe_max_interval=0.02, recent_window=0
    )
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            await cache.set(f"w{n}:{i % 50}", i)
            i += 1
            await asyncio.sleep(0)

    try:
        await cache.set("old", "old")
        primary.down = True
        await cache.get("old")  # fails over
        writers = [asyncio.ensure_future(writer(n)) for n in range(4)]
        original = primary.delete_many
        rounds = 0

        async def slow_delete_many(keys: Sequence[str]) -> int:
            nonlocal rounds
            rounds += 1
            await asyncio.sleep(0.005)  # each replay round gives writers time to write
            return await original(keys)

        primary.delete_many = slow_delete_many  # type: ignore[method-assign]
        primary.down = False

        async def back() -> bool:
            return cache.backend is primary

        await eventually(back)
        stop.set()
        await asyncio.gather(*writers)
        # Without the gate, every round would find new writes and this would never end.
        assert rounds > 3
        assert await cache.get("old") == "old"
    finally:
        stop.set()
        await cache.close()


async def test_transition_callback_errors_do_not_break_the_cache(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary = SwitchableBackend()

    def broken(_: object) -> None:
        raise RuntimeError("callback bug")

    cache = FallbackCache(primary=primary, on_transition=broken, probe_interval=60)
    primary.down = True
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    assert any("on_transition" in r.getMessage() for r in caplog.records)
    await cache.close()


async def test_outage_ttl_cap() -> None:
    primary = SwitchableBackend()
    cache = FallbackCache(primary=primary, outage_ttl_cap=30, probe_interval=60)
    primary.down = True
    await cache.set("long", 1, ttl=3600)
    await cache.set("short", 1, ttl=5)
    await cache.set_many({"m1": 1}, ttl=3600)
    long_ttl, short_ttl, many_ttl = (
        await cache.ttl("long"),
        await cache.ttl("short"),
        await cache.ttl("m1"),
    )
    assert long_ttl is not None
    assert 29 < long_ttl <= 30
    assert short_ttl is not None
    assert short_ttl <= 5
    assert many_ttl is not None
    assert many_ttl <= 30
    await cache.close()


async def test_memory_only_cache_never_caps_or_journals() -> None:
    cache = FallbackCache(outage_ttl_cap=30)
    await cache.set("k", 1, ttl=3600)
    ttl = await cache.ttl("k")
    assert ttl is not None
    assert ttl > 3000
    assert (await cache.get_statistics()).failover.state == "memory-only"
