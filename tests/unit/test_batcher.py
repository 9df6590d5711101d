"""The batcher's rules, with send functions that record what they were asked."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chenu_cache.backends._batch import Batcher


class Wire:
    def __init__(self) -> None:
        self.ones: list[str] = []
        self.manys: list[list[str]] = []
        self.fail_next_batch: Exception | None = None

    async def one(self, key: str) -> str:
        self.ones.append(key)
        await asyncio.sleep(0.001)
        return key.upper()

    async def many(self, keys: Sequence[str]) -> list[str]:
        self.manys.append(list(keys))
        await asyncio.sleep(0.001)
        if self.fail_next_batch is not None:
            exc, self.fail_next_batch = self.fail_next_batch, None
            raise exc
        return [k.upper() for k in keys]


async def test_a_lone_caller_is_never_batched() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)
    for i in range(20):
        assert await batcher.submit(f"k{i}") == f"K{i}"
    assert len(wire.ones) == 20
    assert wire.manys == []


async def test_concurrent_callers_share_round_trips() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)
    keys = [f"k{i}" for i in range(100)]
    results = await asyncio.gather(*(batcher.submit(k) for k in keys))
    assert results == [k.upper() for k in keys]
    assert len(wire.ones) == 1
    assert len(wire.manys) == 1
    assert sorted(wire.manys[0] + wire.ones) == sorted(keys)


async def test_closed_loop_workers_form_full_batches() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)

    async def worker(n: int) -> None:
        for i in range(10):
            assert await batcher.submit(f"w{n}:{i}") == f"W{n}:{i}"

    await asyncio.gather(*(worker(n) for n in range(32)))
    # 320 calls in far fewer round trips than callers: batches stay full.
    assert len(wire.ones) + len(wire.manys) <= 25
    assert max(len(b) for b in wire.manys) >= 31


async def test_a_failed_batch_fails_only_its_callers() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)
    first = asyncio.ensure_future(batcher.submit("alone"))
    await asyncio.sleep(0)
    wire.fail_next_batch = ConnectionError("batch lost")
    queued = [asyncio.ensure_future(batcher.submit(f"q{i}")) for i in range(5)]
    assert await first == "ALONE"
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await batcher.submit("after") == "AFTER"  # the batcher recovered


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)
    first = asyncio.ensure_future(batcher.submit("alone"))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(batcher.submit(f"q{i}")) for i in range(4)]
    await asyncio.sleep(0)
    queued[1].cancel()
    await first
    done = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [done[0], done[2], done[3]] == ["Q0", "Q2", "Q3"]


async def test_batches_are_bounded() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many, max_batch=10)
    await asyncio.gather(*(batcher.submit(f"k{i}") for i in range(45)))
    assert max(len(b) for b in wire.manys) <= 10


async def test_close_cancels_what_waits() -> None:
    wire = Wire()
    batcher = Batcher(wire.one, wire.many)
    first = asyncio.ensure_future(batcher.submit("alone"))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(batcher.submit("q"))
    await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await first
