"""``statistics()``: the whole snapshot at once, with no I/O, equal to get_statistics()."""

from __future__ import annotations

import pytest

from chenu_cache import FallbackCache


async def test_snapshot_matches_get_statistics_on_memory() -> None:
    cache = FallbackCache(read_env=False)
    await cache.set("user:1", {"a": 1})
    await cache.get("user:1")
    await cache.get("user:2")
    await cache.get_or_set("user:3", lambda: 3)
    snapshot = cache.statistics().to_dict()
    assert snapshot == (await cache.get_statistics()).to_dict()
    assert snapshot["hits"] == 1
    assert snapshot["misses"] == 2
    assert snapshot["memory"]["size"] == 2
    assert snapshot["loader"]["calls"] == 1


def test_snapshot_needs_no_event_loop() -> None:
    cache = FallbackCache(read_env=False)
    stats = cache.statistics()  # called outside any loop: it must not await anything
    assert stats.backend == "memory"
    assert stats.to_dict()["redis"]["configured"] is False


@pytest.mark.redis
async def test_snapshot_on_redis_leaves_out_only_server_figures(
    redis_url: str, prefix: str
) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    await cache.initialize()
    try:
        await cache.set("k", 1)
        await cache.get("k")
        snapshot = cache.statistics().to_dict()
        full = (await cache.get_statistics()).to_dict()
        assert snapshot["redis"]["hits"] == full["redis"]["hits"] == 1
        assert snapshot["redis"]["usedMemory"] is None
        assert snapshot["redis"]["usedMemoryBytes"] is None
        assert isinstance(full["redis"]["usedMemoryBytes"], int)
        assert full["redis"]["usedMemory"] is not None
        for section in ("hits", "misses", "failovers", "loader", "namespaces"):
            assert snapshot[section] == full[section]
    finally:
        await cache.clear()
        await cache.close()
