"""Tags (SPEC §14): what a tagged hit costs, and ``invalidate_tags`` staying flat.

    python -m benchmarks.tags            # 5 repetitions, up to 100,000 tagged entries
    python -m benchmarks.tags --quick    # 2 repetitions, fewer calls, up to 10,000

Starts its own redis-server on a free loopback port and prints a markdown report (it
writes no file). As in ``benchmarks/run.py``, contestants run interleaved for several
repetitions, each figure is a median, and each tagged contestant is compared with its
untagged floor measured in the same run: ratio = tagged time / untagged time (1.00 is
free, higher costs more).

1. Hits on Redis: ``get(key)`` of entries written with ``tags=["user:{i}", "all"]``
   against entries written without tags, and a decorated function with
   ``tags=["user:{uid}"]`` against the same function undecorated by tags. Commands are
   counted twice: with ``INFO commandstats`` (reset before each timed run; it also counts,
   under their own names, the commands Lua scripts run) and with ``MONITOR`` in a
   separate, untimed pass (the commands clients sent, i.e. the round trips). The same four
   again on a cache with ``near_cache=True``, interleaved in the same repetitions: each is
   compared with the same untagged floor, and tagged-near with untagged-near. Before
   timing, they are read until whole passes are served near (the tracking link up, no
   near miss); near misses and bypassed reads during the timed runs are reported.
2. The same hits on a memory-only cache.
3. ``invalidate_tags`` of a tag carried by 10 to 100,000 entries: the time of one call
   (median of 5, interleaved over the sizes) must not grow with the number of entries.
   For contrast, ``invalidate_namespace`` of the same entries (SCAN + UNLINK), once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import secrets
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis.asyncio as redis_asyncio
from tests.redis_server import RedisServer

from chenu_cache import MISSING, FallbackCache

IDS = 1000  # distinct keys of each kind, and distinct arguments of the decorated functions
VALUE = {"id": 7, "name": "Ada Lovelace", "plan": "pro", "active": True}
TAG_BLOCK = b"\xc4"  # first byte of a tagged entry (chenu_cache._tags.TAG_MAGIC)
BATCH = 500  # concurrent set() calls while writing the tagged entries of section 3
SAMPLE = 100  # entries checked before (hits) and after (misses) invalidate_tags
INVALIDATIONS = 5  # timed invalidate_tags calls per size
NOT_COUNTED = {"info", "config|resetstat", "echo"}  # the benchmark's own commands
# The near cache's tracking link asks ROLE on a clock, not per hit: counted, each one
# would land in whichever contestant's run it happened to fall in.
HEARTBEAT = {"role"}
NEAR_PREFIX = "bench-tags-near:"  # its own, so the other cache's writes send it no push
WARM_DEADLINE = 10.0  # seconds for the near cache to hold every entry and tag version

GET_PLAIN = "get(), untagged"
GET_TAGGED = "get(), tags=[user:{i}, all]"
DECO_PLAIN = "decorated, untagged"
DECO_TAGGED = "decorated, tags=[user:{uid}]"
NEAR = ", near_cache=True"
NEAR_GET_PLAIN = GET_PLAIN + NEAR
NEAR_GET_TAGGED = GET_TAGGED + NEAR
NEAR_DECO_PLAIN = DECO_PLAIN + NEAR
NEAR_DECO_TAGGED = DECO_TAGGED + NEAR
FLOORS = {
    GET_TAGGED: GET_PLAIN,
    DECO_TAGGED: DECO_PLAIN,
    NEAR_GET_PLAIN: GET_PLAIN,
    NEAR_GET_TAGGED: GET_PLAIN,
    NEAR_DECO_PLAIN: DECO_PLAIN,
    NEAR_DECO_TAGGED: DECO_PLAIN,
}
NEAR_FLOORS = {NEAR_GET_TAGGED: NEAR_GET_PLAIN, NEAR_DECO_TAGGED: NEAR_DECO_PLAIN}


def _profile(uid: int) -> dict[str, Any]:
    return {**VALUE, "id": uid}


# -- measuring -------------------------------------------------------------------------


@dataclass
class Contestant:
    name: str
    call: Callable[[int], Awaitable[object]]
    micros: list[float] = field(default_factory=list)  # per call, one figure per repetition
    stats: list[Counter[str]] = field(default_factory=list)  # commandstats calls per rep
    sent: Counter[str] = field(default_factory=Counter)  # MONITOR: commands clients sent
    scripted: Counter[str] = field(default_factory=Counter)  # MONITOR: run inside scripts
    monitored: int = 0  # calls in the MONITOR pass
    near: FallbackCache | None = None  # the cache whose near cache should serve every call
    timed: int = 0  # timed calls
    went_to_redis: int = 0  # of them, near misses + bypassed: reads that were not near hits


@dataclass
class HitReport:
    title: str
    calls: int
    contestants: list[Contestant]


async def _micros(call: Callable[[int], Awaitable[object]], args: Sequence[int]) -> float:
    """Microseconds per call of ``call`` over ``args``, one at a time."""
    gc.collect()
    start = time.perf_counter()
    for arg in args:
        await call(arg)
    return (time.perf_counter() - start) / len(args) * 1e6


async def _command_calls(admin: redis_asyncio.Redis) -> Counter[str]:
    info = await admin.info("commandstats")
    calls: Counter[str] = Counter()
    for name, figures in info.items():
        command = str(name).removeprefix("cmdstat_")
        if command not in NOT_COUNTED and command not in HEARTBEAT:
            calls[command] = int(figures["calls"])
    return calls


async def _monitor(
    contestant: Contestant, url: str, admin: redis_asyncio.Redis, args: Sequence[int]
) -> None:
    """Count the commands the calls send, with MONITOR (untimed: it slows the server)."""
    token = f"bench-monitor-end-{secrets.token_hex(4)}"
    watcher = redis_asyncio.Redis.from_url(url)
    try:
        async with watcher.monitor() as monitor:
            for arg in args:
                await contestant.call(arg)
            await admin.echo(token)
            while True:
                seen = await asyncio.wait_for(monitor.next_command(), 10)
                command = seen["command"].split(" ", 1)[0].lower()
                if command == "echo" and token in seen["command"]:
                    break
                if command in HEARTBEAT:
                    continue
                if seen["client_type"] == "lua":
                    contestant.scripted[command] += 1
                else:
                    contestant.sent[command] += 1
    finally:
        await watcher.aclose()
    contestant.monitored = len(args)


# -- 1 and 2: tagged hits against untagged hits ----------------------------------------


async def hits(url: str | None, reps: int, calls: int, n_monitor: int) -> HitReport:
    """Tagged and untagged hits of ``get()`` and of a decorated function; on Redis, also
    with a near cache."""
    on_redis = url is not None
    if url is None:
        cache = FallbackCache(read_env=False)
        near = None
    else:
        cache = FallbackCache(redis_url=url, prefix="bench-tags:", read_env=False)
        near = FallbackCache(redis_url=url, prefix=NEAR_PREFIX, near_cache=True, read_env=False)
    caches = [cache] if near is None else [cache, near]
    admin = redis_asyncio.Redis.from_url(url) if url is not None else None
    args = [i % IDS for i in range(calls)]
    try:
        for each in caches:
            await each.initialize()
            assert each.backend.name == ("redis" if on_redis else "memory")
        if admin is not None:
            await admin.ping()  # connected before any count, so its setup is never counted
        contestants = await _kinds(cache, admin, "")
        if near is not None:
            near_contestants = await _kinds(near, admin, NEAR)
            await _until_near(near, near_contestants)
            contestants += near_contestants
        before = [each.statistics() for each in caches]
        for _ in range(reps):
            for contestant in contestants:  # interleaved
                if admin is not None:
                    await admin.config_resetstat()
                went = _went_to_redis(contestant.near)
                contestant.micros.append(await _micros(contestant.call, args))
                contestant.went_to_redis += _went_to_redis(contestant.near) - went
                contestant.timed += len(args)
                if admin is not None:
                    contestant.stats.append(await _command_calls(admin))
        for each, was in zip(caches, before, strict=True):
            now = each.statistics()
            assert now.misses == was.misses, "a timed call missed"
            assert now.stale_by_tag == was.stale_by_tag, "a timed entry was stale by a tag"
            assert now.loader.calls == was.loader.calls, "a decorated call loaded"
        if url is not None and admin is not None:
            for contestant in contestants:
                await _monitor(contestant, url, admin, args[:n_monitor])
    finally:
        for each in caches:
            await each.clear()
            await each.close()
        if admin is not None:
            await admin.aclose()
    where = "Redis" if on_redis else "memory only"
    return HitReport(f"Hits, {where}, {IDS:,} keys of each kind", calls, contestants)


async def _kinds(
    cache: FallbackCache, admin: redis_asyncio.Redis | None, suffix: str
) -> list[Contestant]:
    """The four contestants on ``cache``, every entry they read written and checked."""

    @cache.cached(ttl=3600, type=Any)
    async def plain_profile(uid: int) -> dict[str, Any]:
        return _profile(uid)

    @cache.cached(ttl=3600, type=Any, tags=["user:{uid}"])
    async def tagged_profile(uid: int) -> dict[str, Any]:
        return _profile(uid)

    for i in range(IDS):  # warm: every timed call is a hit
        await cache.set(f"plain:{i}", VALUE, ttl=3600)
        await cache.set(f"tagged:{i}", VALUE, ttl=3600, tags=[f"user:{i}", "all"])
        await plain_profile(i)
        await tagged_profile(i)
    await _check_stored(cache, "tagged:7", admin, tagged=True)
    await _check_stored(cache, "plain:7", admin, tagged=False)
    await _check_stored(cache, tagged_profile.key(7), admin, tagged=True)
    await _check_stored(cache, plain_profile.key(7), admin, tagged=False)
    assert await cache.get("tagged:7") == VALUE
    assert await tagged_profile(7) == _profile(7)

    async def get_plain(i: int) -> object:
        return await cache.get(f"plain:{i}")

    async def get_tagged(i: int) -> object:
        return await cache.get(f"tagged:{i}")

    near = cache if suffix else None
    return [
        Contestant(GET_PLAIN + suffix, get_plain, near=near),
        Contestant(GET_TAGGED + suffix, get_tagged, near=near),
        Contestant(DECO_PLAIN + suffix, plain_profile, near=near),
        Contestant(DECO_TAGGED + suffix, tagged_profile, near=near),
    ]


def _went_to_redis(cache: FallbackCache | None) -> int:
    """Reads so far that the near cache did not serve (0 without one)."""
    if cache is None:
        return 0
    near = cache.statistics().near_cache
    return near.misses + near.bypassed


async def _until_near(cache: FallbackCache, contestants: Sequence[Contestant]) -> None:
    """Read every key until two passes in a row are all near hits.

    Each of this process's writes is reported back by Redis later, and that report drops
    whatever was kept near meanwhile (entries and tag versions alike): reading until a
    pass costs no near miss is what makes the timed calls near hits. The pause between
    passes lets the reports still on their way arrive (a pass of near hits never waits).
    """
    end = time.monotonic() + WARM_DEADLINE
    reads = len(contestants) * IDS
    clean = 0
    while clean < 2:
        if time.monotonic() > end:
            raise RuntimeError(f"the near cache did not serve a whole pass in {WARM_DEADLINE} s")
        was = cache.statistics().near_cache
        for contestant in contestants:
            for i in range(IDS):
                await contestant.call(i)
        now = cache.statistics().near_cache
        went = now.misses + now.bypassed - was.misses - was.bypassed
        served = now.tracking and went == 0 and now.hits - was.hits >= reads
        clean = clean + 1 if served else 0
        await asyncio.sleep(0.05)


async def _check_stored(
    cache: FallbackCache, key: str, admin: redis_asyncio.Redis | None, *, tagged: bool
) -> None:
    """The entries compared really are tagged, and the others really are not."""
    stored: object
    if admin is None:
        stored = await cache.fallback.get(key)
    else:
        stored = await admin.get(cache.prefix + key)
    assert isinstance(stored, bytes), (key, stored)
    assert stored.startswith(TAG_BLOCK) == tagged, (key, stored[:8])


# -- 3: invalidate_tags is flat --------------------------------------------------------


@dataclass
class Size:
    entries: int
    write_seconds: float = 0.0
    millis: list[float] = field(default_factory=list)  # one invalidate_tags call each
    stats: list[Counter[str]] = field(default_factory=list)  # commandstats per call
    hits_before: int = 0
    misses_after: int = 0
    namespace_millis: float = 0.0
    namespace_deleted: int = 0
    namespace_stats: Counter[str] = field(default_factory=Counter)

    @property
    def tag(self) -> str:
        return f"bench:big:{self.entries}"

    @property
    def namespace(self) -> str:
        return f"big{self.entries}"

    def key(self, i: int) -> str:
        return f"{self.namespace}:{i}"


async def _write(cache: FallbackCache, size: Size) -> None:
    """``size.entries`` entries carrying ``size.tag``, set through the cache, ``BATCH``
    calls at a time (``set_many`` takes no tags)."""
    start = time.perf_counter()
    for first in range(0, size.entries, BATCH):
        batch = range(first, min(first + BATCH, size.entries))
        await asyncio.gather(
            *(cache.set(size.key(i), VALUE, ttl=3600, tags=[size.tag]) for i in batch)
        )
    size.write_seconds = time.perf_counter() - start


async def _present(cache: FallbackCache, size: Size) -> int:
    """How many of a random sample of the size's entries are hits."""
    sample = random.Random(size.entries).sample(range(size.entries), min(SAMPLE, size.entries))
    found = 0
    for i in sample:
        if await cache.get(size.key(i), default=MISSING) is not MISSING:
            found += 1
    return found


async def invalidation(url: str, entry_counts: Sequence[int]) -> list[Size]:
    cache = FallbackCache(redis_url=url, prefix="bench-tags-big:", read_env=False)
    admin = redis_asyncio.Redis.from_url(url)
    sizes = [Size(n) for n in entry_counts]
    try:
        await cache.initialize()
        assert cache.backend.name == "redis", "the cache is not on Redis"
        await admin.ping()
        for size in sizes:
            await _write(cache, size)
            size.hits_before = await _present(cache, size)
        # Warm: the bump's pipeline and connections ready before the first timed call.
        await cache.invalidate_tags("bench:warm")
        for _ in range(INVALIDATIONS):
            for size in sizes:  # interleaved; invalidating again costs the same
                await admin.config_resetstat()
                start = time.perf_counter()
                await cache.invalidate_tags(size.tag)
                size.millis.append((time.perf_counter() - start) * 1e3)
                size.stats.append(await _command_calls(admin))
        for size in sizes:
            size.misses_after = min(SAMPLE, size.entries) - await _present(cache, size)
        # The contrast, which also removes the entries: largest first, so that each SCAN
        # walks the entries of its size and of the smaller ones only.
        for size in reversed(sizes):
            await admin.config_resetstat()
            start = time.perf_counter()
            size.namespace_deleted = await cache.invalidate_namespace(size.namespace)
            size.namespace_millis = (time.perf_counter() - start) * 1e3
            size.namespace_stats = await _command_calls(admin)
    finally:
        await cache.clear()
        await cache.close()
        await admin.aclose()
    return sizes


# -- report ----------------------------------------------------------------------------


def _names(counts: Counter[str], per: float) -> str:
    return ", ".join(f"{c.upper()} {k / per:g}" for c, k in sorted(counts.items())) or "-"


def _trips(n: float) -> str:
    return f"{n:g} round trip" + ("" if n == 1 else "s")


def _median_counts(counts: list[Counter[str]], per: float) -> tuple[float, str]:
    """The total and the per-command figures, each a median over ``counts``, per call."""
    commands = sorted({c for stat in counts for c in stat})
    total = statistics.median(sum(c.values()) for c in counts) / per
    named = ", ".join(
        f"{c.upper()} {statistics.median(stat[c] for stat in counts) / per:g}" for c in commands
    )
    return total, named or "-"


def render_hits(report: HitReport, on_redis: bool) -> str:
    by_name = {c.name: c for c in report.contestants}
    median = {c.name: statistics.median(c.micros) for c in report.contestants}
    lines = [f"### {report.title}", ""]
    if on_redis:
        monitored = report.contestants[0].monitored
        lines += [
            f"{report.calls:,} calls per repetition. Per hit: round trips (commands clients "
            f"sent) from `MONITOR`, in a separate untimed pass of {monitored:,} calls per "
            "contestant; commands executed from `INFO commandstats` (reset before each timed "
            "run), which also counts the commands Lua scripts run, under their own names. "
            "The near cache's heartbeat (ROLE on its tracking link, on a clock) is not "
            "counted. Rows ending `near_cache=True` are hits on a second cache with a near "
            "cache, compared with the same untagged floors (no near cache); their "
            "tagged / untagged ratio follows the table.",
            "",
            "| contestant | µs per hit (median) | time vs untagged | round trips per hit "
            "(MONITOR) | of them, inside scripts | commands executed per hit (commandstats) |",
            "|---|---|---|---|---|---|",
        ]
    else:
        lines += [
            f"{report.calls:,} calls per repetition; no I/O.",
            "",
            "| contestant | µs per hit (median) | time vs untagged |",
            "|---|---|---|",
        ]
    for c in report.contestants:
        floor = FLOORS.get(c.name)
        ratio = f"{median[c.name] / median[floor]:.2f}x" if floor else "1 (floor)"
        row = f"| {c.name} | {median[c.name]:.2f} | {ratio} |"
        if on_redis:
            sent = sum(c.sent.values()) / c.monitored
            total, named = _median_counts(c.stats, report.calls)
            row += (
                f" {sent:g} ({_names(c.sent, c.monitored)}) | {_names(c.scripted, c.monitored)}"
                f" | {total:g} ({named}) |"
            )
        lines.append(row)
    lines.append("")
    for tagged, floor in FLOORS.items():
        if tagged not in by_name:
            continue
        t, f = by_name[tagged], by_name[floor]
        slower = median[tagged] / median[floor]
        if on_redis:
            trips_t = sum(t.sent.values()) / t.monitored
            trips_f = sum(f.sent.values()) / f.monitored
            lines.append(
                f"- `{tagged}`: {_trips(trips_t)} per hit ({_names(t.sent, t.monitored)}) "
                f"against {_trips(trips_f)} ({_names(f.sent, f.monitored)}) for "
                f"`{floor}`; {slower:.2f}x the time, {median[tagged] - median[floor]:+.1f} µs."
            )
        else:
            lines.append(
                f"- `{tagged}`: {slower:.2f}x the time of `{floor}`, "
                f"{median[tagged] - median[floor]:+.2f} µs per hit."
            )
    for tagged, floor in NEAR_FLOORS.items():
        if tagged not in by_name:
            continue
        lines.append(
            f"- Tagged-near / untagged-near: `{tagged}` takes "
            f"{median[tagged] / median[floor]:.2f}x the time of `{floor}`, "
            f"{median[tagged] - median[floor]:+.2f} µs per hit."
        )
    near = [c for c in report.contestants if c.near is not None]
    missed = [c for c in near if c.went_to_redis]
    for c in missed:
        lines.append(
            f"- NOT ALL NEAR HITS: `{c.name}`: {c.went_to_redis:,} of {c.timed:,} timed "
            "reads went to Redis (near misses + bypassed)."
        )
    if near and not missed:
        timed = sum(c.timed for c in near)
        lines.append(
            f"- All {timed:,} timed calls of the `near_cache=True` rows were near hits: "
            "near misses + bypassed unchanged over the timed runs."
        )
    return "\n".join(lines)


def render_invalidation(sizes: list[Size]) -> str:
    lines = [
        "### invalidate_tags is flat, Redis",
        "",
        f"Each size: that many entries written with `set(..., tags=[tag])`, {BATCH} calls at "
        f"a time through `asyncio.gather`, all sizes in Redis at once; then {INVALIDATIONS} "
        "timed `invalidate_tags(tag)` per size, interleaved over the sizes (median, min and "
        f"max); a random sample of up to {SAMPLE} entries read before (hits) and after "
        "(misses). Commands per call from `INFO commandstats`, reset before each call. For "
        "contrast, one `invalidate_namespace` of the same entries, which deletes them "
        "(largest size first: its SCAN walks the keys of that size and of the smaller ones).",
        "",
        "| entries carrying the tag | written in (s) | invalidate_tags, ms (median) | min-max "
        "ms | commands per call | sample: hits before, misses after | invalidate_namespace "
        "(contrast), ms | its commands |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        total, named = _median_counts(s.stats, 1)
        sampled = min(SAMPLE, s.entries)
        ns_named = _names(s.namespace_stats, 1)
        lines.append(
            f"| {s.entries:,} | {s.write_seconds:.2f} | {statistics.median(s.millis):.3f} | "
            f"{min(s.millis):.3f}-{max(s.millis):.3f} | {total:g} ({named}) | "
            f"{s.hits_before}/{sampled}, {s.misses_after}/{sampled} | "
            f"{s.namespace_millis:.1f} ({s.namespace_deleted:,} deleted) | {ns_named} |"
        )
    smallest, largest = sizes[0], sizes[-1]
    growth = statistics.median(largest.millis) / statistics.median(smallest.millis)
    commands = {_median_counts(s.stats, 1)[0] for s in sizes}
    flat = growth <= 2.0 and len(commands) == 1
    all_missed = all(s.misses_after == min(SAMPLE, s.entries) for s in sizes)
    all_hit = all(s.hits_before == min(SAMPLE, s.entries) for s in sizes)
    lines += [
        "",
        f"invalidate_tags at {largest.entries:,} entries takes {growth:.2f}x its time at "
        f"{smallest.entries:,}, with {' or '.join(f'{c:g}' for c in sorted(commands))} "
        f"{'command' if commands == {1} else 'commands'} per call "
        f"{'at every size' if len(commands) == 1 else 'depending on the size'}: "
        f"{'flat' if flat else 'NOT flat'} (flat: within 2x and the same number of "
        "commands). Sampled entries: "
        f"{'all hits before' if all_hit else 'SOME MISSED before'}, "
        f"{'all misses after' if all_missed else 'SOME STILL HIT after'}.",
    ]
    return "\n".join(lines)


def _versions() -> str:
    parts = []
    for name in ["chenu-cache", "redis", "hiredis", "orjson"]:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # noqa: PERF203
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


async def _redis_version(url: str) -> str:
    client = redis_asyncio.Redis.from_url(url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return str(info["redis_version"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 repetitions, fewer calls")
    args = parser.parse_args()
    reps = 2 if args.quick else 5
    memory_calls = 20_000 if args.quick else 50_000
    redis_calls = 2_000 if args.quick else 5_000
    monitored = 100 if args.quick else 200
    entry_counts = [10, 1_000, 10_000] if args.quick else [10, 1_000, 10_000, 100_000]
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not on PATH"
    started = time.perf_counter()
    server = RedisServer(binary)
    server.start()
    try:
        on_redis = await hits(server.url, reps, redis_calls, monitored)
        memory = await hits(None, reps, memory_calls, 0)
        sizes = await invalidation(server.url, entry_counts)
        redis_version = await _redis_version(server.url)
    finally:
        server.close()  # stops the server, always
    report = [
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python "
        f"{platform.python_version()}; {os.cpu_count()} CPUs ({platform.machine()}); "
        f"redis-server {redis_version}; medians of {reps} interleaved repetitions. "
        "Time vs untagged = tagged time / untagged time in the same run (lower is better).",
        "",
        f"Versions: {_versions()}.",
        "",
        render_hits(on_redis, True),
        "",
        render_hits(memory, False),
        "",
        render_invalidation(sizes),
    ]
    print("\n".join(report))
    print(f"\n(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
