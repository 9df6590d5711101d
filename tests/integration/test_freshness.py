"""Freshness options (SPEC §6) against memory and a real Redis, on an injected wall clock."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from chenu_cache import (
    MISSING,
    CacheTypeError,
    FallbackCache,
    InvalidTTLError,
    cache,
)
from chenu_cache._freshness import EntryTiming, xfetch_due
from tests.conftest import FakeClock, eventually
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class Boom(Exception):
    pass


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture(params=["memory", "redis"])
async def timed_cache(
    request: pytest.FixtureRequest, prefix: str, wall: FakeClock
) -> AsyncIterator[FallbackCache]:
    if request.param == "memory":
        c = FallbackCache(read_env=False, clock=wall)
    else:
        url: str = request.getfixturevalue("redis_url")
        c = FallbackCache(redis_url=url, prefix=prefix, clock=wall)
    await c.initialize()
    try:
        yield c
    finally:
        await c.clear()
        await c.close()


# -- stale-while-revalidate ------------------------------------------------------------


async def test_stale_while_revalidate(timed_cache: FallbackCache, wall: FakeClock) -> None:
    calls = 0
    release = asyncio.Event()

    async def loader() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()  # the refresh hangs until told: nobody may wait for it
        return calls

    opts = {"ttl": 60, "refresh_after": 10}
    assert await timed_cache.get_or_set("k", loader, **opts) == 1
    wall.advance(5)
    assert await timed_cache.get_or_set("k", loader, **opts) == 1
    assert calls == 1  # still fresh: no refresh
    wall.advance(10)
    results = await asyncio.gather(
        *(timed_cache.get_or_set("k", loader, **opts) for _ in range(50))
    )
    assert results == [1] * 50  # served at once, stale, while the refresh hangs
    assert calls == 2  # one background refresh for 50 stale hits
    release.set()

    async def refreshed() -> bool:
        return await timed_cache.get("k") == 2

    await eventually(refreshed)
    stats = await timed_cache.get_statistics()
    assert stats.loader.refreshes == 1


async def test_hard_ttl_still_bounds_staleness(timed_cache: FallbackCache, wall: FakeClock) -> None:
    values = iter(["first", "second"])
    opts = {"ttl": 60, "refresh_after": 10}
    assert await timed_cache.get_or_set("k", lambda: next(values), **opts) == "first"
    wall.advance(61)
    # Past the hard TTL nothing stale is served: the caller waits for a fresh value.
    assert await timed_cache.get_or_set("k", lambda: next(values), **opts) == "second"


async def test_failed_background_refresh_keeps_serving(
    timed_cache: FallbackCache, wall: FakeClock
) -> None:
    calls = 0

    def loader() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise Boom("refresh failed")
        return "v1"

    opts = {"ttl": 60, "refresh_after": 10}
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"
    wall.advance(20)
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"

    async def failed() -> bool:
        return (await timed_cache.get_statistics()).loader.refresh_failures == 1

    await eventually(failed)
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"


# -- serve-stale-on-error --------------------------------------------------------------


async def test_stale_if_error_inside_and_outside_the_window(
    timed_cache: FallbackCache, wall: FakeClock
) -> None:
    calls = 0
    fail = False

    def loader() -> str:
        nonlocal calls
        calls += 1
        if fail:
            raise Boom("source down")
        return f"v{calls}"

    opts = {"ttl": 10, "stale_if_error": 30}
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"
    remaining = await timed_cache.ttl("k")
    assert remaining is not None
    assert 35 < remaining <= 40  # kept past its TTL for the stale window
    fail = True
    wall.advance(15)  # expired, inside the window
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"
    assert calls == 2
    # Right after a failure the loader is not hammered: stale is served at once.
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"
    assert calls == 2
    wall.advance(2)  # after the retry interval, it tries again
    assert await timed_cache.get_or_set("k", loader, **opts) == "v1"
    assert calls == 3
    # A plain get never serves the expired value.
    assert await timed_cache.get("k", default=MISSING) is MISSING
    wall.advance(30)  # 47 s after the write: beyond TTL + window
    with pytest.raises(Boom):
        await timed_cache.get_or_set("k", loader, **opts)
    fail = False
    wall.advance(2)
    assert await timed_cache.get_or_set("k", loader, **opts) == "v5"
    assert (await timed_cache.get_statistics()).loader.stale_served == 3


async def test_without_stale_if_error_errors_propagate(
    timed_cache: FallbackCache, wall: FakeClock
) -> None:
    await timed_cache.get_or_set("k", lambda: "v", ttl=10, refresh_after=5)
    wall.advance(11)

    def failing() -> str:
        raise Boom("down")

    with pytest.raises(Boom):
        await timed_cache.get_or_set("k", failing, ttl=10, refresh_after=5)


# -- XFetch ----------------------------------------------------------------------------


def test_xfetch_rate_matches_the_formula() -> None:
    # P(refresh) = exp(-(time to expiry) / (load_seconds * beta)).
    timing = EntryTiming(written_at=0.0, ttl=100.0, load_seconds=1.0)
    rng = random.Random(20261124)
    for before_expiry, beta in [(1.0, 1.0), (3.0, 1.0), (2.0, 2.0), (0.5, 0.5)]:
        trials = 4000
        hits = sum(
            xfetch_due(100.0 - before_expiry, timing, beta, rng.random) for _ in range(trials)
        )
        p = math.exp(-before_expiry / beta)
        sigma = math.sqrt(trials * p * (1 - p))
        assert abs(hits - trials * p) < 5 * sigma, (before_expiry, beta, hits, trials * p)


def test_xfetch_edges() -> None:
    forever = EntryTiming(written_at=0.0, ttl=None, load_seconds=5.0)
    assert not xfetch_due(1e9, forever, 1.0, lambda: 0.5)
    timing = EntryTiming(written_at=0.0, ttl=10.0, load_seconds=1.0)
    assert xfetch_due(10.0, timing, 1.0, lambda: 1.0)  # at expiry: always
    assert xfetch_due(0.0, timing, 1.0, lambda: 0.0)  # U = 0: infinitely early
    assert not xfetch_due(0.0, timing, 1.0, lambda: 0.99)


async def test_early_refresh_refreshes_before_expiry(
    timed_cache: FallbackCache, wall: FakeClock
) -> None:
    calls = 0

    async def slow_loader() -> int:
        nonlocal calls
        calls += 1
        wall.advance(2.0)  # the load takes 2 s of wall time: XFetch weighs by it
        return calls

    draws = iter([0.999, 0.001])  # first hit: far from due; second: due

    timed_cache._loader._random = lambda: next(draws)
    assert await timed_cache.get_or_set("k", slow_loader, ttl=60, early_refresh=1.0) == 1
    wall.advance(50)  # 8 s before expiry
    assert await timed_cache.get_or_set("k", slow_loader, ttl=60, early_refresh=1.0) == 1
    assert calls == 1
    assert await timed_cache.get_or_set("k", slow_loader, ttl=60, early_refresh=1.0) == 1

    async def refreshed() -> bool:
        return await timed_cache.get("k") == 2

    await eventually(refreshed)  # refreshed before it expired


# -- options, decorator, shutdown ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"refresh_after": -1}, InvalidTTLError),
        ({"refresh_after": 0}, InvalidTTLError),
        ({"stale_if_error": float("inf")}, InvalidTTLError),
        ({"early_refresh": -2}, InvalidTTLError),
        ({"lock": -1}, InvalidTTLError),
        ({"lock": "yes"}, CacheTypeError),
        ({"refresh_after": "10"}, CacheTypeError),
    ],
)
async def test_bad_freshness_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    c = FallbackCache(read_env=False)
    with pytest.raises(error):
        await c.get_or_set("k", lambda: 1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        cache(**kwargs)  # type: ignore[call-overload]


async def test_decorator_takes_the_same_options(wall: FakeClock) -> None:
    c = FallbackCache(read_env=False, clock=wall)
    calls = 0

    @cache(ttl=60, refresh_after=10, stale_if_error=60, cache=c)
    async def compute(x: int) -> int:
        nonlocal calls
        calls += 1
        return x + calls

    assert await compute(1) == 2
    wall.advance(20)
    assert await compute(1) == 2  # stale, refresh started

    async def refreshed() -> bool:
        return await compute(1) == 3

    await eventually(refreshed)
    await c.close()


async def test_close_cancels_background_refreshes(wall: FakeClock) -> None:
    c = FallbackCache(read_env=False, clock=wall)
    started = asyncio.Event()

    async def loader() -> str:
        if started.is_set():
            return "never"
        return "v"

    async def hanging() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    await c.get_or_set("k", loader, ttl=60, refresh_after=1)
    wall.advance(5)
    assert await c.get_or_set("k", hanging, ttl=60, refresh_after=1) == "v"
    await started.wait()
    await c.close()
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftovers == []


# -- cross-process lock ----------------------------------------------------------------


def _worker(mode: str, url: str, prefix: str, key: str, lock_ttl: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lock_worker", mode, url, prefix, key, str(lock_ttl)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _reap(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop a worker if it still runs and collect its output (closing its pipes)."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=30)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_lock_runs_the_loader_once_across_processes(
    redis_url: str, prefix: str, raw: redis_asyncio.Redis
) -> None:
    workers = [_worker("load", redis_url, prefix, "report:1", 5.0) for _ in range(4)]
    try:

        async def all_ready() -> bool:
            return int(await raw.get(f"{prefix}test:ready") or 0) == 4

        await eventually(all_ready, timeout=30)
        await raw.rpush(f"{prefix}test:go", *[1] * len(workers))
        for w in workers:
            w.wait(timeout=60)
    finally:
        outputs = [_reap(w) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1] for o in outputs]
    values = [json.loads(out) for out, _ in outputs]
    assert int(await raw.get(f"{prefix}test:loader-runs")) == 1
    assert len({v["pid"] for v in values}) == 1  # every process got the one load's value
    await raw.delete(*[k async for k in raw.scan_iter(f"{prefix}*")])


@pytest.mark.redis
async def test_dead_holder_is_replaced_after_the_lock_ttl(
    redis_url: str, prefix: str, raw: redis_asyncio.Redis
) -> None:
    holder = _worker("hold", redis_url, prefix, "report:2", 1.0)
    try:

        async def locked() -> bool:
            return bool(await raw.exists(f"{prefix}!lock:report:2"))

        await eventually(locked, timeout=30)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        _reap(holder)
    c = FallbackCache(redis_url=redis_url, prefix=prefix)
    try:
        value = await c.get_or_set("report:2", lambda: "replacement", ttl=60, lock=1.0)
        assert value == "replacement"
        assert not await raw.exists(f"{prefix}!lock:report:2")  # released
    finally:
        await c.clear()
        await c.close()
        await raw.delete(f"{prefix}test:ready", f"{prefix}test:loader-runs")


@pytest.mark.redis
async def test_lock_waiter_does_not_spin(
    redis_url: str, prefix: str, raw: redis_asyncio.Redis
) -> None:
    # Two instances stand in for two processes: each has its own single flight.
    holder = FallbackCache(redis_url=redis_url, prefix=prefix)
    waiter = FallbackCache(redis_url=redis_url, prefix=prefix)
    started = asyncio.Event()
    release = asyncio.Event()
    waiter_calls = 0

    async def slow() -> str:
        started.set()
        await release.wait()
        return "from-holder"

    def waiter_loader() -> str:
        nonlocal waiter_calls
        waiter_calls += 1
        return "from-waiter"

    try:
        await holder.initialize()
        await waiter.initialize()
        first = asyncio.ensure_future(holder.get_or_set("k", slow, ttl=60, lock=5))
        await started.wait()
        await raw.config_resetstat()
        second = asyncio.ensure_future(waiter.get_or_set("k", waiter_loader, ttl=60, lock=5))
        await asyncio.sleep(0.5)  # the waiter waits half a second, as cashews' was measured
        stats = await raw.info("commandstats")
        release.set()
        assert await first == "from-holder"
        assert await second == "from-holder"
        assert waiter_calls == 0
        sent = sum(v["calls"] for k, v in stats.items() if k in {"cmdstat_get", "cmdstat_set"})
        assert sent < 30, stats  # a handful, not thousands
    finally:
        await holder.clear()
        await holder.close()
        await waiter.close()


async def test_lock_degrades_to_single_flight_without_redis() -> None:
    c = FallbackCache(redis_url=f"redis://127.0.0.1:{free_port()}/0", probe_interval=60)
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return 7

    try:
        await c.initialize()
        results = await asyncio.gather(*(c.get_or_set("k", loader, lock=True) for _ in range(50)))
        assert results == [7] * 50
        assert calls == 1
    finally:
        await c.close()


@pytest.mark.redis
async def test_lock_costs_nothing_on_a_hit(
    redis_url: str, prefix: str, raw: redis_asyncio.Redis
) -> None:
    c = FallbackCache(redis_url=redis_url, prefix=prefix)
    try:
        await c.initialize()
        await c.get_or_set("k", lambda: 1, lock=True)
        await raw.config_resetstat()
        for _ in range(20):
            assert await c.get_or_set("k", lambda: 2, lock=True) == 1
        stats = await raw.info("commandstats")
        assert stats["cmdstat_get"]["calls"] == 20
        assert "cmdstat_set" not in stats
        assert "cmdstat_evalsha" not in stats
    finally:
        await c.clear()
        await c.close()


async def test_get_nowait_serves_fresh_entries_and_leaves_due_ones_to_the_loader(
    wall: FakeClock,
) -> None:
    c = FallbackCache(read_env=False, clock=wall)
    await c.get_or_set("k", lambda: {"v": 1}, ttl=60, refresh_after=10)
    assert c.get_nowait("k", refresh_after=10) == {"v": 1}  # an envelope, read without await
    assert c.get_nowait("k", refresh_after=timedelta(seconds=10)) == {"v": 1}
    wall.advance(11)
    assert c.get_nowait("k", refresh_after=10) is MISSING  # due: get_or_set refreshes
    assert c.get_nowait("k") == {"v": 1}  # without the option, still fresh
    wall.advance(50)
    assert c.get_nowait("k") is MISSING  # past the logical TTL
    await c.close()
