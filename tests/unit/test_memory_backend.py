"""What MemoryBackend adds to the contract: LRU order, bounds, and expiry housekeeping."""

from __future__ import annotations

import pytest

from chenu_cache import ConfigurationError, MemoryBackend, ValueTooLargeError
from tests.conftest import FakeClock


async def test_evicts_least_recently_used(clock: FakeClock) -> None:
    b = MemoryBackend(max_entries=3, clock=clock)
    for k in "abc":
        await b.set(k, b"v", None)
    await b.get("a")  # a is now the most recently used
    await b.set("d", b"v", None)
    assert await b.get_many(list("abcd")) == [b"v", None, b"v", b"v"]
    assert (await b.stats()).evictions == 1


async def test_overwrite_counts_as_use(clock: FakeClock) -> None:
    b = MemoryBackend(max_entries=2, clock=clock)
    await b.set("a", b"1", None)
    await b.set("b", b"1", None)
    await b.set("a", b"2", None)
    await b.set("c", b"1", None)
    assert await b.get_many(["a", "b", "c"]) == [b"2", None, b"1"]


async def test_byte_bound_evicts_until_it_fits(clock: FakeClock) -> None:
    b = MemoryBackend(max_bytes=100, clock=clock)
    for i in range(5):
        await b.set(f"k{i}", b"x" * 30, None)  # 32 bytes each with the key
    stats = await b.stats()
    assert stats.bytes is not None
    assert stats.bytes <= 100
    assert stats.entries == 3
    assert await b.get("k0") is None
    assert await b.get("k4") == b"x" * 30


async def test_entry_larger_than_byte_bound_is_refused_without_side_effects(
    clock: FakeClock,
) -> None:
    b = MemoryBackend(max_bytes=50, clock=clock)
    await b.set("keep", b"v", None)
    with pytest.raises(ValueTooLargeError):
        await b.set("big", b"x" * 100, None)
    with pytest.raises(ValueTooLargeError):
        await b.set_many([("ok", b"v", None), ("big", b"x" * 100, None)])
    assert await b.get("keep") == b"v"
    assert await b.get("ok") is None


async def test_expired_entries_do_not_pile_up(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    for i in range(1000):
        await b.set(f"old{i}", b"v", 1)
    clock.advance(2)
    # Nobody reads the old keys; writes alone reclaim them, a bounded amount each.
    for i in range(40):
        await b.set(f"new{i}", b"v", None)
    assert len(b) == 40
    stats = await b.stats()
    assert stats.expirations == 1000
    assert stats.entries == 40


async def test_stats_sweeps_everything_expired(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    await b.set_many([(f"k{i}", b"v", 1) for i in range(100)])
    await b.set("kept", b"v", None)
    clock.advance(1.5)
    assert (await b.stats()).entries == 1


async def test_overwritten_keys_do_not_grow_the_expiry_index(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    for i in range(10_000):
        await b.set("hot", b"v", 3600 + i / 100)  # over 100 ticks
    assert b._bucketed <= 2 * len(b) + 64
    assert sum(len(keys) for keys in b._buckets.values()) == b._bucketed
    assert len(b._ticks) == len(b._buckets)
    assert await b.get("hot") == b"v"


async def test_stale_heap_item_does_not_expire_a_rewritten_entry(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    await b.set("k", b"old", 1)
    await b.set("k", b"new", 100)
    clock.advance(2)
    await b.set("other", b"v", None)  # triggers a sweep over the old heap item
    assert await b.get("k") == b"new"


async def test_stats_report_every_counter(clock: FakeClock) -> None:
    b = MemoryBackend(max_entries=2, clock=clock)
    await b.set("a", b"12345", 1)
    await b.get("a")
    await b.get("zzz")
    clock.advance(2)
    await b.get("a")
    await b.set("b", b"1", None)
    await b.set("c", b"1", None)
    await b.set("d", b"1", None)
    s = await b.stats()
    assert (s.hits, s.misses, s.expirations, s.evictions) == (1, 2, 1, 1)
    assert s.entries == 2
    assert s.bytes == 4


async def test_clear_counts_only_live_entries(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    await b.set("a", b"v", 1)
    await b.set("b", b"v", None)
    clock.advance(2)
    assert await b.clear() == 1
    assert len(b) == 0


@pytest.mark.parametrize("kwargs", [{"max_entries": 0}, {"max_bytes": 0}])
def test_refuses_impossible_bounds(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        MemoryBackend(**kwargs)


async def test_default_clock_is_monotonic_and_works() -> None:
    b = MemoryBackend()
    await b.set("k", b"v", 60)
    assert await b.get("k") == b"v"


async def test_expiry_buckets_reclaim_exactly_what_expired(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    for i in range(200):
        await b.set(f"k{i}", b"v", 0.5 + i * 0.05)  # 0.5 s .. 10.45 s, 11 ticks
    await b.set("forever", b"v", None)
    clock.advance(3.01)
    stats = await b.stats()  # an exact sweep: every expired entry gone, no live one
    live = [i for i in range(200) if 0.5 + i * 0.05 > 3.01]
    assert stats.entries == len(live) + 1
    assert stats.expirations == 200 - len(live)
    for i in live:
        assert await b.get(f"k{i}") == b"v"
    clock.advance(10)
    for _ in range(20):  # writes sweep past ticks, a bounded amount each
        await b.set("w", b"v", None)
    assert len(b) == 2
    assert not b._buckets
    assert not b._ticks


async def test_scan_pages_never_cut_between_hash_twins(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chenu_cache.backends import memory

    b = MemoryBackend(clock=clock)
    for i in range(10):
        await b.set(f"k{i}", b"v", None)
    monkeypatch.setattr(memory, "_HASH_MASK", 0)  # every key in one scan position
    cursor, keys = await b.scan("*", 0, count=3)
    assert sorted(keys) == sorted(f"k{i}" for i in range(10))  # the twins, all at once
    assert await b.scan("*", cursor, count=3) == (0, [])


async def test_rewrites_within_one_tick_keep_one_bucket_slot(clock: FakeClock) -> None:
    b = MemoryBackend(clock=clock)
    for _ in range(1_000):
        b.set_nowait("hot", b"v", 100.0)  # same expiry tick every time
    assert b._bucketed == 1
    clock.advance(101)
    b.set_nowait("other", b"v", None)  # sweeps the passed tick
    assert await b.get("hot") is None
    assert b._bucketed == 0
