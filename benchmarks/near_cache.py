"""Near cache: hit rates against raw redis-py, and stale reads after another process writes.

    python -m benchmarks.near_cache            # 5 repetitions, 200 writes per scenario
    python -m benchmarks.near_cache --quick    # 3 short repetitions, 50 writes

Contestants: chenu-cache with ``near_cache=True`` (get and decorated hits), chenu-cache
without it, and cashews with ``client_side=True`` as its README sets it up, plus
``protocol=2`` (see `open_cashews`). Hit rates run interleaved for several repetitions
and are reported as medians and as ratios to raw redis-py ``GET`` + ``json.loads``.

The staleness check writes new versions of a key from a separate process (plain
redis-py, the bytes each library would store) while this process reads the key in a
loop that yields to the event loop between reads, as a server would. A read that started
after the write returned and answers an older version is stale. Starts its own
redis-server on a free loopback port unless given ``--redis-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as redis_asyncio
from tests.redis_server import RedisServer

from chenu_cache import FallbackCache

ROOT = Path(__file__).resolve().parents[1]
KEYS = 1000
VALUE = {"id": 12345, "name": "Ada Lovelace", "roles": ["admin", "author"], "active": True}
FLOOR = "raw redis-py GET + json.loads"
CHENU_NEAR = "chenu-cache, near_cache=True"
CHENU_PLAIN = "chenu-cache, no near cache"
CHENU_PREFIX = "bench-near:"
CASHEWS_PREFIX = "bench-cw:"
CASHEWS = "cashews, client_side=True, protocol=2"
CASHEWS_DEFAULT = "cashews, client_side=True, redis-py's default protocol (RESP3)"

Get = Callable[[str], Awaitable[Any]]


@dataclass
class Reader:
    """One contestant: how to read, write and close it, and what it stores in Redis."""

    name: str
    get: Get
    set: Callable[[str, Any], Awaitable[Any]]
    decorate: Callable[[Callable[[str], Awaitable[Any]]], Get]
    raw_key: Callable[[str], str]
    encode: Callable[[Any], bytes]
    close: Callable[[], Awaitable[None]]
    near_stats: Callable[[], Any] = field(default=lambda: None)


async def open_chenu(url: str, near: bool, prefix: str = CHENU_PREFIX) -> Reader:
    cache = FallbackCache(redis_url=url, prefix=prefix, near_cache=near, read_env=False)
    await cache.initialize()
    return Reader(
        name=CHENU_NEAR if near else CHENU_PLAIN,
        get=cache.get,
        set=lambda k, v: cache.set(k, v, ttl=3600),
        decorate=lambda fn: cache.cached(ttl=3600)(fn),
        raw_key=lambda k: prefix + k,
        encode=cache.codec.encode,
        close=cache.close,
        near_stats=lambda: cache.statistics().near_cache,
    )


async def open_cashews(url: str, protocol: int | None = 2, prefix: str = CASHEWS_PREFIX) -> Reader:
    """cashews as its README sets client-side caching up. Its listener reads invalidations
    as RESP2 pub/sub messages; redis-py 8 speaks RESP3 unless told otherwise, and then
    delivers them as push messages cashews never sees, so ``protocol=2`` is passed too
    (``protocol=None``: redis-py's default, to show what that does)."""
    from cashews import Cache

    options: dict[str, Any] = {"client_side": True, "client_side_prefix": prefix}
    if protocol is not None:
        options["protocol"] = protocol
    cache = Cache()
    cache.setup(url, **options)
    await cache.init()  # returns once its invalidation listener is subscribed
    return Reader(
        name=CASHEWS if protocol == 2 else CASHEWS_DEFAULT,
        get=cache.get,
        set=lambda k, v: cache.set(k, v, expire=3600),
        decorate=lambda fn: cache(ttl="1h")(fn),
        raw_key=lambda k: prefix + k,
        encode=cashews_encode,
        close=cache.close,
    )


def cashews_encode(version: int) -> bytes:
    """cashews stores ints as their digits: a plain SET of the digits is what it would
    write itself (only ints are used as versions)."""
    return str(version).encode()


def cashews_available() -> bool:
    try:
        import cashews  # noqa: F401
    except ImportError:
        return False
    return True


async def until_coherent(reader: Reader, key: str, deadline: float = 5.0) -> None:
    """Read until the near cache says its tracking link is up (it comes up after a read)."""
    end = time.monotonic() + deadline
    while True:
        await reader.get(key)
        stats = reader.near_stats()
        if stats is None or stats.tracking:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"{reader.name}: tracking not up after {deadline} s")
        await asyncio.sleep(0.005)


# -- hit rates -------------------------------------------------------------------------


async def _rate(call: Get, keys: list[str], seconds: float) -> float:
    gc.collect()
    done = 0
    start = time.perf_counter()
    while True:
        for k in keys:
            await call(k)
        done += len(keys)
        # A near hit never suspends; yielding once a batch lets the tracking link's
        # reader and heartbeat run, as they would between a server's requests.
        await asyncio.sleep(0)
        now = time.perf_counter()
        if now - start >= seconds:
            return done / (now - start)


async def hit_rates(
    url: str, reps: int, seconds: float, only: list[str] | None = None
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Ops/s per contestant per repetition (``"floor"`` is raw redis-py), and notes."""
    keys = [f"user:{i}" for i in range(KEYS)]
    random.Random(5).shuffle(keys)

    async def compute(x: str) -> dict[str, Any]:
        return {**VALUE, "id": x}

    raw = redis_asyncio.Redis.from_url(url)
    payload = json.dumps(VALUE)
    await raw.mset({f"bench-raw:{k}": payload for k in keys})

    async def floor(k: str) -> Any:
        data = await raw.get("bench-raw:" + k)
        return None if data is None else json.loads(data)

    readers = [await open_chenu(url, near=True), await open_chenu(url, near=False, prefix="bp:")]
    if cashews_available():
        readers.append(await open_cashews(url))
    runs: dict[str, Get] = {"floor": floor}
    near_reader = readers[0]
    for reader in readers:
        for k in keys:
            await reader.set(k, VALUE)
        runs[f"{reader.name}: get"] = reader.get
        if reader.name != CHENU_PLAIN:
            runs[f"{reader.name}: decorated"] = reader.decorate(compute)
    if only is not None:
        runs = {name: run for name, run in runs.items() if name == "floor" or name in only}
    await until_coherent(near_reader, keys[0])
    for run in runs.values():
        for _ in range(2):  # a decorated miss stores its entry; the next read keeps it near
            for k in keys:
                await run(k)
    results: dict[str, list[float]] = {}
    went_to_redis: dict[str, int] = {}
    for _ in range(reps):
        for name, run in runs.items():
            before = near_reader.near_stats()
            results.setdefault(name, []).append(await _rate(run, keys, seconds))
            after = near_reader.near_stats()
            if name.startswith(CHENU_NEAR):
                went = after.misses - before.misses + after.bypassed - before.bypassed
                went_to_redis[name] = went_to_redis.get(name, 0) + went
    notes = {
        name: f"{went:,} timed reads went to Redis (near misses + bypassed)"
        for name, went in went_to_redis.items()
        if went
    }
    for reader in readers:
        await reader.close()
    await raw.delete(*[f"bench-raw:{k}" for k in keys])
    await raw.aclose()
    return results, notes


# -- staleness -------------------------------------------------------------------------


class Writer:
    """A separate process with its own redis-py connection, writing what it is sent."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def write(self, key: str, blobs: list[bytes]) -> int:
        """SET each blob in turn; the writer's CLOCK_MONOTONIC (ns) when the last returned."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{key} {' '.join(b.hex() for b in blobs)}\n".encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 10)
        if not line:
            raise RuntimeError("the writer process exited")
        return int(line)


@contextlib.asynccontextmanager
async def writer_process(url: str) -> AsyncIterator[Writer]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.near_cache",
        "--writer",
        url,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield Writer(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def writer_main(url: str) -> None:
    client = redis.Redis.from_url(url)
    for line in sys.stdin:
        key, *blobs = line.split()
        for blob in blobs:
            client.set(key, bytes.fromhex(blob), ex=3600)
        # time.monotonic_ns is CLOCK_MONOTONIC: one clock for every process on Linux
        print(time.monotonic_ns(), flush=True)


@dataclass
class Staleness:
    writes: int = 0
    reads: int = 0
    stale: int = 0
    writes_stale: int = 0
    stale_after_grace: int = 0
    writes_stale_after_grace: int = 0
    never_replaced: int = 0
    delays_ms: list[float] = field(default_factory=list)


async def staleness(
    reader: Reader,
    writer: Writer,
    rounds: int,
    scenario: str,
    grace_ms: float = 5.0,
    window_ms: float = 20.0,
    timeout: float = 2.0,
) -> Staleness:
    """``scenario``: ``single`` (one external write a round), ``burst`` (five back to back),
    or ``own-set`` (the reader sets the key itself, then the external write follows)."""
    key = f"stale:{scenario}"
    version = 0
    await writer.write(reader.raw_key(key), [reader.encode(version)])
    await until_coherent(reader, key)
    samples: list[tuple[int, Any]] = []
    wanted = [version]
    seen = asyncio.Event()
    stop = False

    async def read_forever() -> None:
        while not stop:
            started = time.monotonic_ns()
            value = await reader.get(key)
            samples.append((started, value))
            if value == wanted[0]:
                seen.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(read_forever())
    out = Staleness()
    try:
        for _ in range(rounds):
            if scenario == "own-set":
                version += 1
                await reader.set(key, version)
            versions = list(range(version + 1, version + (6 if scenario == "burst" else 2)))
            version = wanted[0] = versions[-1]
            seen.clear()
            samples.clear()
            returned = await writer.write(reader.raw_key(key), [reader.encode(v) for v in versions])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(seen.wait(), timeout)
            # Keep reading through the window even once the new version is seen: a copy
            # can come back stale (a reply that raced the invalidation, then kept).
            await asyncio.sleep(max(0.0, (returned + window_ms * 1e6 - time.monotonic_ns()) / 1e9))
            if task.done():
                task.result()
            after = [(t, v) for t, v in samples if t >= returned]
            stale = [t for t, v in after if v != version]
            late = [t for t in stale if t >= returned + grace_ms * 1e6]
            fresh = next((t for t, v in after if v == version), None)
            out.writes += 1
            out.reads += len(after)
            out.stale += len(stale)
            out.writes_stale += bool(stale)
            out.stale_after_grace += len(late)
            out.writes_stale_after_grace += bool(late)
            if fresh is None:
                out.never_replaced += 1
                # Put it right so one stuck copy does not spoil the rounds after it.
                await reader.set(key, version)
            else:
                out.delays_ms.append((fresh - returned) / 1e6)
            await asyncio.sleep(random.uniform(0.001, 0.003))
    finally:
        stop = True
        await task
    return out


# -- report ----------------------------------------------------------------------------


def render_rates(results: dict[str, list[float]], notes: dict[str, str], reps: int) -> str:
    floor = statistics.median(results["floor"])
    lines = [
        f"### Redis-backed get-hit, one caller, {KEYS:,} keys (medians of {reps} reps)",
        "",
        f"Floor: {FLOOR}, {floor:,.0f} ops/s. Target for chenu-cache's near cache: >= 20x.",
        "",
        "| contestant | ops/s (median) | ratio to floor |",
        "|---|---|---|",
    ]
    for name, rates in results.items():
        if name != "floor":
            median = statistics.median(rates)
            lines.append(f"| {name} | {median:,.0f} | {median / floor:.1f}x |")
    lines += [f"| {name} | {note} | |" for name, note in notes.items()]
    return "\n".join(lines)


def render_staleness(rows: list[tuple[str, str, Staleness]], grace_ms: float) -> str:
    lines = [
        "### Stale reads after another process's write",
        "",
        "Reads that started after the (last) write of a round returned. single: one write a "
        "round; burst: five back to back; own-set: the reader set the key itself just before. "
        "Each round is watched for at least 20 ms.",
        "",
        "| contestant | scenario | rounds | reads | stale reads (writes) | stale reads "
        f"after {grace_ms:g} ms (writes) | never replaced in 2 s | first new read p50 / max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, scenario, s in rows:
        delays = (
            f"{statistics.median(s.delays_ms):.2f} / {max(s.delays_ms):.2f} ms"
            if s.delays_ms
            else "-"
        )
        lines.append(
            f"| {name} | {scenario} | {s.writes} | {s.reads:,} | {s.stale:,} ({s.writes_stale}) "
            f"| {s.stale_after_grace:,} ({s.writes_stale_after_grace}) | {s.never_replaced} "
            f"| {delays} |"
        )
    return "\n".join(lines)


async def run(url: str, reps: int, seconds: float, writes: int) -> str:
    results, notes = await hit_rates(url, reps, seconds)
    # (scenario, opener, rounds): cashews with redis-py's default protocol never
    # sees an invalidation, so each of its rounds waits out the 2 s timeout; a few show it.
    plan: list[tuple[str, Callable[[], Awaitable[Reader]], int]] = [
        (scenario, lambda: open_chenu(url, near=True), writes)
        for scenario in ["single", "burst", "own-set"]
    ]
    if cashews_available():
        plan += [
            (scenario, lambda: open_cashews(url), writes)
            for scenario in ["single", "burst", "own-set"]
        ]
        plan.append(("single", lambda: open_cashews(url, protocol=None), min(writes, 10)))
    rows = []
    async with writer_process(url) as writer:
        for scenario, open_reader, rounds in plan:
            reader = await open_reader()
            try:
                rows.append(
                    (reader.name, scenario, await staleness(reader, writer, rounds, scenario))
                )
            finally:
                await reader.close()
    return render_rates(results, notes, reps) + "\n\n" + render_staleness(rows, 5.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per contestant per rep")
    parser.add_argument("--writes", type=int, default=200, help="rounds per staleness scenario")
    parser.add_argument("--quick", action="store_true", help="3 reps of 0.3 s, 50 writes")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--writer", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer_main(args.writer)
        return
    reps, seconds, writes = (3, 0.3, 50) if args.quick else (args.reps, args.seconds, args.writes)
    started = time.perf_counter()
    if args.redis_url:
        report = asyncio.run(run(args.redis_url, reps, seconds, writes))
    else:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH"
        with RedisServer(binary) as server:
            report = asyncio.run(run(server.url, reps, seconds, writes))
    print(report)
    print(f"\n(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
